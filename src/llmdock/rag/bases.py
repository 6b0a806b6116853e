"""Knowledge bases in the store: create, look up, list, remove; documents, chunks, vectors and glossaries.

Every write that changes what retrieval sees bumps the knowledge base's ``version``, so indexes built in
process (``llmdock.rag.index``) know to rebuild. Vectors are read and written here as float32 rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.store import Store
from llmdock.store.kb_rows import KbChunkRow, KbDocumentRow, KbEmbeddingRow, KbGlossaryRow, KnowledgeBaseRow

NAME_MAX = 200


@dataclass(frozen=True)
class KnowledgeBase:
    id: int
    name: str
    embedding_model: str
    dimensions: int
    version: int
    created_at: datetime
    documents: int = 0
    chunks: int = 0
    description: str = ""  # what it holds, in words: the ground stage's router may compare questions to it


def _info(row: KnowledgeBaseRow, documents: int = 0, chunks: int = 0) -> KnowledgeBase:
    return KnowledgeBase(
        row.id,
        row.name,
        row.embedding_model,
        row.dimensions,
        row.version,
        row.created_at,
        documents,
        chunks,
        row.description or "",
    )


def create(store: Store, name: str, embedding_model: str, description: str = "") -> KnowledgeBase:
    if not name or len(name) > NAME_MAX or not name.isprintable() or name.strip() != name:
        raise InvalidRequest(f"a knowledge base name is 1 to {NAME_MAX} printable characters", param="name")
    row = KnowledgeBaseRow(
        name=name,
        embedding_model=embedding_model,
        dimensions=0,
        version=0,
        created_at=datetime.now(UTC),
        description=description,
    )
    try:
        with store.session() as s, s.begin():
            s.add(row)
    except IntegrityError:
        raise Conflict(f"knowledge base {name!r} exists already") from None
    return _info(row)


def get(store: Store, name: str) -> KnowledgeBase:
    with store.session() as s:
        row = s.scalar(select(KnowledgeBaseRow).where(KnowledgeBaseRow.name == name))
        if row is None:
            known = ", ".join(s.scalars(select(KnowledgeBaseRow.name).order_by(KnowledgeBaseRow.name)))
            raise NotFound(f"no knowledge base {name!r} (known: {known or 'none; llmdock kb create NAME'})")
        docs = s.scalar(select(func.count()).where(KbDocumentRow.kb_id == row.id)) or 0
        chunks = s.scalar(select(func.count()).where(KbChunkRow.kb_id == row.id)) or 0
        return _info(row, docs, chunks)


def list_all(store: Store) -> list[KnowledgeBase]:
    with store.session() as s:
        docs = dict(
            s.execute(select(KbDocumentRow.kb_id, func.count()).group_by(KbDocumentRow.kb_id)).tuples().all()
        )
        chunks = dict(
            s.execute(select(KbChunkRow.kb_id, func.count()).group_by(KbChunkRow.kb_id)).tuples().all()
        )
        rows = s.scalars(select(KnowledgeBaseRow).order_by(KnowledgeBaseRow.name))
        return [_info(r, docs.get(r.id, 0), chunks.get(r.id, 0)) for r in rows]


def describe(store: Store, name: str, description: str) -> KnowledgeBase:
    """Set what the knowledge base holds, in words (the router's description); bumps its version."""
    kb = get(store, name)
    with store.session() as s, s.begin():
        s.execute(
            update(KnowledgeBaseRow).where(KnowledgeBaseRow.id == kb.id).values(description=description)
        )
        bump(s, kb.id)
    return get(store, name)


def version(store: Store, kb_id: int) -> int:
    with store.session() as s:
        return int(s.scalar(select(KnowledgeBaseRow.version).where(KnowledgeBaseRow.id == kb_id)) or 0)


def bump(s: Session, kb_id: int, dimensions: int | None = None) -> None:
    values: dict[str, object] = {"version": KnowledgeBaseRow.version + 1}
    if dimensions is not None:
        values["dimensions"] = dimensions
    s.execute(update(KnowledgeBaseRow).where(KnowledgeBaseRow.id == kb_id).values(**values))


def documents(store: Store, kb_id: int) -> list[KbDocumentRow]:
    with store.session() as s:
        return list(s.scalars(select(KbDocumentRow).where(KbDocumentRow.kb_id == kb_id)))


def remove_documents(store: Store, kb_id: int, ids: Iterable[int]) -> int:
    ids = list(ids)
    if not ids:
        return 0
    with store.session() as s, s.begin():
        s.execute(delete(KbChunkRow).where(KbChunkRow.document_id.in_(ids)))
        s.execute(delete(KbDocumentRow).where(KbDocumentRow.id.in_(ids)))
        bump(s, kb_id)
    return len(ids)


def cached_vectors(store: Store, model: str, dimensions: int, hashes: list[str]) -> dict[str, np.ndarray]:
    """The stored vectors of these chunk hashes (for this model and dimension count)."""
    found: dict[str, np.ndarray] = {}
    with store.session() as s:
        for start in range(0, len(hashes), 500):
            rows = s.execute(
                select(KbEmbeddingRow.content_hash, KbEmbeddingRow.vector).where(
                    KbEmbeddingRow.model == model,
                    KbEmbeddingRow.dimensions == dimensions,
                    KbEmbeddingRow.content_hash.in_(hashes[start : start + 500]),
                )
            )
            for h, blob in rows:
                found[h] = np.frombuffer(blob, dtype=np.float32)
    return found


def save_vectors(store: Store, model: str, vectors: dict[str, np.ndarray]) -> None:
    with store.session() as s, s.begin():
        existing = set(
            s.scalars(
                select(KbEmbeddingRow.content_hash).where(
                    KbEmbeddingRow.model == model, KbEmbeddingRow.content_hash.in_(list(vectors))
                )
            )
        )
        s.add_all(
            KbEmbeddingRow(
                model=model,
                content_hash=h,
                dimensions=int(v.shape[0]),
                vector=np.asarray(v, np.float32).tobytes(),
            )
            for h, v in vectors.items()
            if h not in existing
        )


def set_glossary(store: Store, kb_id: int, entries: dict[str, str]) -> None:
    """Replace the knowledge base's glossary (term → definition)."""
    with store.session() as s, s.begin():
        s.execute(delete(KbGlossaryRow).where(KbGlossaryRow.kb_id == kb_id))
        s.add_all(KbGlossaryRow(kb_id=kb_id, term=t, definition=d) for t, d in entries.items())
        bump(s, kb_id)


def glossary(store: Store, kb_id: int) -> dict[str, str]:
    with store.session() as s:
        rows = s.execute(
            select(KbGlossaryRow.term, KbGlossaryRow.definition).where(KbGlossaryRow.kb_id == kb_id)
        )
        return {t: d for t, d in rows}
