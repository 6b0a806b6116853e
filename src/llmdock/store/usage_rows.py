"""Hourly totals of the traces (``llmdock.store.usage_hours``), read by ``llmdock usage``, ``GET /admin/usage``
and the dashboard's usage and monitoring pages instead of the traces themselves.

``usage_hours``: one row per closed UTC hour, team, model, deployment and API key, kept by the first query
that needs the hour; a row whose ``team_id`` is ``"*"`` marks the hour as kept, traffic or not. Deleting
traces (retention, erasure) subtracts them from the kept rows in the same transaction.

The primary key starts with the hour's ``day`` (its first ten characters, kept as a column for this): the
usage page totals a week or a month per day, team, model and key, and on SQLite, where the table is kept in
key order (``WITHOUT ROWID``), those totals then stream in key order instead of sorting every hour's row
(a week at a million traces, about 50,000 rows, is grouped three times faster so).
"""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base

KEPT = "*"  # the team_id of the row that marks an hour (or a day) as kept
DIMS = ("team_id", "model", "deployment", "api_key_id")  # what a row totals per (after its day and hour)


class UsageHour(Base):
    __tablename__ = "usage_hours"
    __table_args__ = ({"sqlite_with_rowid": False},)  # kept in key order on SQLite

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # "YYYY-MM-DD", the hour's
    team_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(200), primary_key=True)
    hour: Mapped[str] = mapped_column(String(13), primary_key=True)  # "YYYY-MM-DD HH", UTC
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    blocked: Mapped[int] = mapped_column(Integer)  # refused by a guard (``content_policy`` errors)
    cache_hits: Mapped[int] = mapped_column(Integer)  # exact or semantic
    sum_ms: Mapped[float] = mapped_column(Float)
    max_ms: Mapped[float] = mapped_column(Float)  # after a deletion, an upper bound
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost: Mapped[float] = mapped_column(Float)
