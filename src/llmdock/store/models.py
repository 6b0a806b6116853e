"""Tables. Every change to them goes through an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Dialect, Float, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores and returns aware UTC datetimes on every backend.

    SQLite keeps no zone (it would store 12:00+05:30 as 12:00 and give it back naive) and PostgreSQL
    answers in the session's zone; converting to UTC on the way in and attaching UTC on the way out makes
    both give the same instant back, and makes SQLite's text ordering the time ordering. Naive values are
    taken as UTC. The DDL is plain ``DateTime(timezone=True)``, so no migration is involved.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Trace(Base):
    """One request, whatever way it came in (gateway, CLI, batch, evaluation)."""

    __tablename__ = "traces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    operation: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200), index=True)
    backend: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column(Integer, default=200)
    stream: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str] = mapped_column(String(32), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    input: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output: Mapped[str] = mapped_column(Text, default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    deployment: Mapped[str] = mapped_column(String(200), default="")
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    cache: Mapped[str] = mapped_column(String(16), default="")


class Span(Base):
    """One pipeline stage of one trace."""

    __tablename__ = "spans"
    __table_args__ = (Index("ix_spans_trace_id_seq", "trace_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trace_id: Mapped[str] = mapped_column(String(32), ForeignKey("traces.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column()
    duration_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
