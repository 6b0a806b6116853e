"""Feedback on traces: one row per score, comment or correction someone gave a trace (``llmdock.feedback``).

A row keeps the trace's ``subject`` and ``team_id`` beside the trace id, so GDPR export/erase find it by
subject, and a team's keys see only their own team's rows, even after the trace itself is gone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.keyring import DecryptionError, Keyring, is_sealed
from llmdock.store.models import Base


class FeedbackRow(Base):
    __tablename__ = "feedback_scores"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    name: Mapped[str] = mapped_column(String(64), default="")  # thumbs | rating | a named score | ""
    value: Mapped[float | None] = mapped_column(Float, nullable=True)  # thumbs: 1 up / 0 down; rating 1-5
    comment: Mapped[str] = mapped_column(Text, default="")
    correction: Mapped[str] = mapped_column(Text, default="")  # the answer the user wanted
    source: Mapped[str] = mapped_column(String(16))  # user | reviewer | evaluator
    subject: Mapped[str] = mapped_column(String(200), default="", index=True)  # the trace's subject
    team_id: Mapped[str] = mapped_column(String(32), default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")


def opened_text(keyring: Keyring | None, row: FeedbackRow) -> tuple[str, str]:
    """A row's comment and correction in the clear (sealed when ``privacy.encrypt_bodies`` is on)."""
    out = []
    for field, text in (("comment", row.comment), ("correction", row.correction)):
        if is_sealed(text):
            if keyring is None:
                raise DecryptionError(
                    "feedback text is encrypted and no key is configured (privacy.encryption_key_env)",
                    where=f"feedback {row.id}",
                )
            text = keyring.open_text(text, f"feedback:{row.id}:{field}")
        out.append(text)
    return out[0], out[1]


def feedback_view(row: FeedbackRow, keyring: Keyring | None) -> dict[str, Any]:
    """A row as JSON-ready data, its text opened."""
    comment, correction = opened_text(keyring, row)
    view = {c.name: getattr(row, c.name) for c in FeedbackRow.__table__.columns}
    return view | {"created_at": row.created_at.isoformat(), "comment": comment, "correction": correction}
