"""Online evaluation's bookkeeping and drift's stored reference statistics (llmdock.monitor).

- ``monitor_eval_cursors``: how far the online evaluator has read the traces (the ``created_at`` and id of the
  last trace it looked at), so a restart continues where it stopped instead of reading everything again.
- ``monitor_eval_claims``: one row per (rule, trace) the evaluator chose to score, written before it is
  queued; ``outcome`` stays empty until its scores are stored, in the same transaction, so a trace is scored
  at most once and a restart re-queues exactly the claims left unfinished.
- ``monitor_drift_references``: a model's reference window summarised once (``llmdock monitor reference set``):
  the samples, counts and embeddings drift compares the current window with.

The scores themselves are feedback rows (``feedback_scores``, source ``evaluator``): on the trace, beside the
users' feedback.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base


class EvalCursor(Base):
    __tablename__ = "monitor_eval_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column()  # of the last trace read
    trace_id: Mapped[str] = mapped_column(String(32), default="")  # ties at the same instant: by id


class EvalClaim(Base):
    __tablename__ = "monitor_eval_claims"

    rule: Mapped[str] = mapped_column(String(200), primary_key=True)
    trace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), default="")
    trace_created_at: Mapped[datetime] = mapped_column(index=True)
    claimed_at: Mapped[datetime] = mapped_column()
    done_at: Mapped[datetime | None] = mapped_column(default=None)
    outcome: Mapped[str] = mapped_column(Text, default="")  # "" queued | scored | error: … | dropped: …


class DriftReference(Base):
    __tablename__ = "monitor_drift_references"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    since: Mapped[datetime] = mapped_column()
    until: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column()
    traces: Mapped[int] = mapped_column(Integer, default=0)
    window_s: Mapped[float] = mapped_column(Float, default=0.0)
    embedding_model: Mapped[str] = mapped_column(String(200), default="")  # "" when none was used
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)  # samples, counts, languages, scores
    embeddings: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # numpy .npz
