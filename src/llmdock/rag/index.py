"""A knowledge base's search structures, built in process from the store's rows: vectors (HNSW) and BM25.

Chosen by bench/rag_bench.py (bench/README.md): usearch's HNSW over float32 inner products, at ef_search 256,
reaches recall@10 0.967 on 100,000 MiniLM-derived vectors at a query P50 of 1.5 ms (targets: 0.95, 5 ms), as
hnswlib and FAISS HNSW do at similar settings; usearch is kept for a maintained wheel (hnswlib's last release
is from 2023) that saves and memory-maps its index as one file, at the cost of a slower build than hnswlib's
in that run. PostgreSQL here has no pgvector, so the same in-process index serves every store. The HNSW graph is saved under ``<home>/kb/`` by knowledge base and version, so a
restart or a second worker loads it instead of rebuilding; BM25 (bm25s, Snowball-stemmed English) is rebuilt
in memory. Rows are the knowledge base's chunks in id order; the index's keys are row numbers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from llmdock.rag.bases import KnowledgeBase
from llmdock.rag.chunking import embedded_text
from llmdock.store import Store
from llmdock.store.kb_rows import KbChunkRow, KbDocumentRow, KbEmbeddingRow

CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256  # bench/rag_bench.py: recall@10 0.967 at 100,000 vectors (64 gave 0.81), P50 1.5 ms
EXACT_BELOW = 2048  # rows: a brute-force product is as fast as the graph and exact


def new_hnsw(dims: int) -> Any:
    from usearch.index import Index

    return Index(
        ndim=dims,
        metric="ip",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )


def bm25_tokens(texts: list[str]) -> Any:
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)


@dataclass
class Rows:
    """What a search returns about a chunk, by row number."""

    chunk_ids: np.ndarray
    texts: list[str]
    headings: list[list[str]]
    ordinals: list[int]
    sources: list[str]
    kinds: list[str]
    titles: list[str]
    vectors: np.ndarray  # unit rows, float32


def load_rows(store: Store, kb: KnowledgeBase) -> Rows:
    q = (
        select(
            KbChunkRow.id,
            KbChunkRow.text,
            KbChunkRow.headings,
            KbChunkRow.ordinal,
            KbDocumentRow.source,
            KbDocumentRow.kind,
            KbDocumentRow.title,
            KbEmbeddingRow.vector,
        )
        .join(KbDocumentRow, KbDocumentRow.id == KbChunkRow.document_id)
        .join(
            KbEmbeddingRow,
            (KbEmbeddingRow.content_hash == KbChunkRow.content_hash)
            & (KbEmbeddingRow.model == kb.embedding_model)
            & (KbEmbeddingRow.dimensions == kb.dimensions),
        )
        .where(KbChunkRow.kb_id == kb.id)
        .order_by(KbChunkRow.id)
    )
    with store.session() as s:
        rows = s.execute(q).all()
    vectors = np.empty((len(rows), max(kb.dimensions, 1)), dtype=np.float32)
    for i, r in enumerate(rows):
        vectors[i] = np.frombuffer(r[7], dtype=np.float32)
    return Rows(
        np.array([r[0] for r in rows], dtype=np.int64),
        [r[1] for r in rows],
        [list(r[2] or []) for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
        [r[6] for r in rows],
        vectors,
    )


class KbIndex:
    """One version of one knowledge base, searchable by vector and by BM25."""

    def __init__(self, kb: KnowledgeBase, rows: Rows, cache_dir: Path | None) -> None:
        import bm25s

        self.kb = kb
        self.rows = rows
        self.size = len(rows.texts)
        self.hnsw: Any = None
        if self.size >= EXACT_BELOW:
            self.hnsw = self._graph(cache_dir)
        self.bm25: Any = None
        if self.size:
            self.bm25 = bm25s.BM25()
            corpus = [embedded_text(t, h) for t, h in zip(rows.texts, rows.headings, strict=True)]
            self.bm25.index(bm25_tokens(corpus), show_progress=False)

    def _graph(self, cache_dir: Path | None) -> Any:
        index = new_hnsw(self.kb.dimensions)
        path = cache_dir / f"{self.kb.id}-v{self.kb.version}-{self.size}.usearch" if cache_dir else None
        if path is not None and path.exists():
            index.load(str(path))
            if len(index) == self.size:
                return index
            index = new_hnsw(self.kb.dimensions)
        index.add(np.arange(self.size, dtype=np.uint64), self.rows.vectors, threads=0)  # every core: once
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            for old in path.parent.glob(f"{self.kb.id}-v*.usearch"):
                old.unlink(missing_ok=True)
            partial = path.with_suffix(".partial")
            index.save(str(partial))
            partial.replace(path)
        return index

    def mask(self, filters: dict[str, str] | None) -> np.ndarray | None:
        """Rows that pass the filters (``source``: a glob on the file path, ``kind``, ``heading``: a word in
        the heading path), or None for all rows."""
        if not filters:
            return None
        keep = np.ones(self.size, dtype=bool)
        r = self.rows
        for key, value in filters.items():
            if key == "source":
                keep &= np.array([fnmatch.fnmatch(s, value) for s in r.sources], dtype=bool)
            elif key == "kind":
                keep &= np.array([k == value for k in r.kinds], dtype=bool)
            elif key == "heading":
                low = value.lower()
                keep &= np.array([any(low in h.lower() for h in hs) for hs in r.headings], dtype=bool)
            else:
                from llmdock.errors import InvalidRequest

                raise InvalidRequest(f"unknown filter {key!r}: use source, kind or heading", param="filters")
        return keep

    def dense(self, query: np.ndarray, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        """(row, cosine) of the nearest rows: the HNSW graph, or an exact product when filtered or small."""
        if not self.size:
            return []
        if self.hnsw is not None and mask is None:
            found = self.hnsw.search(query, min(k, self.size))
            return [(int(key), 1.0 - float(d)) for key, d in zip(found.keys, found.distances, strict=True)]
        rows = np.arange(self.size) if mask is None else np.flatnonzero(mask)
        scores = self.rows.vectors[rows] @ query
        top = np.argsort(-scores)[:k]
        return [(int(rows[i]), float(scores[i])) for i in top]

    def lexical(self, query: str, k: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        if self.bm25 is None:
            return []
        tokens = bm25_tokens([query])
        if not tokens.vocab:
            return []
        weights = None if mask is None else mask.astype(np.float32)
        docs, scores = self.bm25.retrieve(
            tokens, k=min(k, self.size), show_progress=False, n_threads=1, weight_mask=weights
        )
        return [(int(d), float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
