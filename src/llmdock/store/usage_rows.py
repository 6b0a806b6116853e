"""Hourly totals of the traces (``llmdock.store.usage_hours``), read by ``llmdock usage`` and ``GET
/admin/usage`` instead of the traces themselves.

``usage_hours``: one row per closed UTC hour, team, model and deployment, kept by the first query that
needs the hour; a row whose ``team_id`` is ``"*"`` marks the hour as kept, traffic or not. Deleting traces
(retention, erasure) subtracts them from the kept rows in the same transaction. Not per key: a week of hours
per key was 114,000 rows at a million traces (0.2 s to add up); per team it is a few thousand.
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base


class UsageHour(Base):
    __tablename__ = "usage_hours"

    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # "YYYY-MM-DD HH", UTC
    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    blocked: Mapped[int] = mapped_column(Integer)  # refused by a guard (``content_policy`` errors)
    cache_hits: Mapped[int] = mapped_column(Integer)  # exact or semantic
    sum_ms: Mapped[float] = mapped_column(Float)
    max_ms: Mapped[float] = mapped_column(Float)  # after a deletion, an upper bound
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost: Mapped[float] = mapped_column(Float)
