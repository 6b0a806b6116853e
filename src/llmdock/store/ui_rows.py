"""The dashboard's tables and the trace indexes its filters need (``llmdock.ui``).

``UiSession``: one signed-in browser. The cookie carries a random token (signed); the row keeps only the
token's SHA-256, and the key's prefix and keyed hash (as ``api_keys`` stores them), so every page checks the
key again: a revoked or expired key ends its sessions at once, and logging out deletes the row.

The indexes serve the trace list's keyset pagination (newest first, ``created_at, id``) under its most
selective filters: a model, a status (errors are rare), a team (every non-admin view is one team's).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base, Trace


class UiSession(Base):
    __tablename__ = "ui_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    key_prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)


TRACE_INDEXES = (
    Index("ix_traces_ui_model", Trace.model, Trace.created_at, Trace.id),
    Index("ix_traces_ui_status", Trace.status, Trace.created_at, Trace.id),
    Index("ix_traces_ui_team", Trace.team_id, Trace.created_at, Trace.id),
)


class UiTraceHour(Base):
    """Hourly totals of the traces of one team, model and key, kept once an hour has closed (computed on the
    first view that needs them): the monitoring charts and the usage page read these instead of the traces.
    A row with ``team_id`` ``"*"`` marks an hour as computed, traffic or not."""

    __tablename__ = "ui_trace_hours"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # "YYYY-MM-DD HH", UTC
    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    blocked: Mapped[int] = mapped_column(Integer)  # refused by a guard (``content_policy`` errors)
    sum_ms: Mapped[float] = mapped_column(Float)
    max_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost: Mapped[float] = mapped_column(Float)
