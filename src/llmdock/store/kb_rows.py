"""Knowledge bases (issue 18): their documents, chunks, embeddings and glossaries.

Vectors are float32 blobs keyed by (embedding model, chunk content hash) in ``kb_embeddings``, shared by
every knowledge base: a chunk is embedded once, and re-ingests, other knowledge bases holding the same text,
test-set generation and evaluation reuse the stored vector. The same tables work on SQLite and PostgreSQL;
the vector index is built in process from them (``llmdock.rag.index``). ``kb_memory`` holds conversation
turns by (team, session id), for the ``memory`` stage; with ``privacy.encrypt_bodies`` their text is sealed
like trace bodies, bound to the row (``kb_memory:<id>:content``), and rows stored in the clear still read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, Session, mapped_column

from llmdock.store.keyring import DecryptionError, Keyring, is_sealed
from llmdock.store.models import Base


class KnowledgeBaseRow(Base):
    __tablename__ = "kb_bases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    embedding_model: Mapped[str] = mapped_column(String(200))
    dimensions: Mapped[int] = mapped_column(Integer, default=0)  # 0 until the first chunk is embedded
    version: Mapped[int] = mapped_column(Integer, default=0)  # bumped by every change: indexes rebuild
    created_at: Mapped[datetime] = mapped_column()
    description: Mapped[str] = mapped_column(Text, default="", server_default="")  # the router reads it


class KbDocumentRow(Base):
    """One source file: ``status`` is ``done`` once all its chunks are stored (a killed ingest redoes it)."""

    __tablename__ = "kb_documents"
    __table_args__ = (UniqueConstraint("kb_id", "source", name="uq_kb_documents_source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("kb_bases.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    chunks: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column()


class KbChunkRow(Base):
    __tablename__ = "kb_chunks"
    __table_args__ = (Index("ix_kb_chunks_kb_id", "kb_id"), Index("ix_kb_chunks_document_id", "document_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kb_id: Mapped[int] = mapped_column(ForeignKey("kb_bases.id", ondelete="CASCADE"))
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    headings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    tokens: Mapped[int] = mapped_column(Integer, default=0)


class KbEmbeddingRow(Base):
    __tablename__ = "kb_embeddings"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dimensions: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class KbGlossaryRow(Base):
    __tablename__ = "kb_glossary"

    kb_id: Mapped[int] = mapped_column(ForeignKey("kb_bases.id", ondelete="CASCADE"), primary_key=True)
    term: Mapped[str] = mapped_column(String(200), primary_key=True)
    definition: Mapped[str] = mapped_column(Text)


class KbMemoryRow(Base):
    """One turn of a conversation (``role`` user or assistant), by team and the caller's session id; or
    (``role`` summary) a summary of the session's turns up to and including row ``covers_to``."""

    __tablename__ = "kb_memory"
    __table_args__ = (
        Index("ix_kb_memory_session", "team_id", "session"),
        Index("ix_kb_memory_subject", "subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    team_id: Mapped[str] = mapped_column(String(32), default="")
    session: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(200), default="")  # GDPR erase deletes the subject's turns
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    trace_id: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column()
    covers_to: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)  # summaries only


def memory_context(row_id: int) -> str:
    """What a memory row's sealed text is bound to: it opens only as that row's."""
    return f"kb_memory:{row_id}:content"


def add_memory(s: Session, rows: list[KbMemoryRow], keyring: Keyring | None) -> None:
    """Add the rows, their text sealed under ``keyring`` when one is given. The text is never written in the
    clear, not even for a moment: the rows go in empty to get their ids, then take the sealed text."""
    if keyring is None:
        s.add_all(rows)
        return
    texts = [r.content for r in rows]
    for r in rows:
        r.content = ""
    s.add_all(rows)
    s.flush()
    for r, text in zip(rows, texts, strict=True):
        r.content = keyring.seal_text(text, memory_context(r.id))


def opened_memory(keyring: Keyring | None, row_id: int, content: str) -> str:
    """A memory row's text in the clear (as it is when it was stored unsealed)."""
    if not is_sealed(content):
        return content
    if keyring is None:
        raise DecryptionError(
            "conversation memory is encrypted and no key is configured (privacy.encryption_key_env)",
            where=f"kb_memory {row_id}",
        )
    return keyring.open_text(content, memory_context(row_id))
