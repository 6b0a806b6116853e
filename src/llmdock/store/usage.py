"""Usage and cost summaries over the traces: by day (UTC), model and deployment, aggregated in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select

from llmdock.store.engine import Store
from llmdock.store.models import Trace


@dataclass(frozen=True)
class UsageRow:
    day: str
    model: str
    deployment: str
    requests: int
    errors: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost: float


def _day(store: Store) -> Any:
    if store.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Trace.created_at), "YYYY-MM-DD")
    return func.date(Trace.created_at)  # SQLite keeps UTC text (see UTCDateTime)


def usage_summary(store: Store, *, days: int = 7, model: str | None = None) -> list[UsageRow]:
    since = datetime.now(UTC) - timedelta(days=days)
    day = _day(store).label("day")
    q = (
        select(
            day,
            Trace.model,
            Trace.deployment,
            func.count().label("requests"),
            func.sum(case((Trace.status == "error", 1), else_=0)).label("errors"),
            func.sum(case((Trace.cache.in_(["hit", "semantic-hit"]), 1), else_=0)).label("cache_hits"),
            func.sum(Trace.prompt_tokens).label("prompt_tokens"),
            func.sum(Trace.completion_tokens).label("completion_tokens"),
            func.sum(Trace.cost).label("cost"),
        )
        .where(Trace.created_at >= since)
        .group_by(day, Trace.model, Trace.deployment)
        .order_by(day.desc(), Trace.model, Trace.deployment)
    )
    if model:
        q = q.where(Trace.model == model)
    with store.session() as s:
        return [
            UsageRow(
                str(r.day),
                r.model,
                r.deployment,
                int(r.requests),
                int(r.errors or 0),
                int(r.cache_hits or 0),
                int(r.prompt_tokens or 0),
                int(r.completion_tokens or 0),
                float(r.cost or 0.0),
            )
            for r in s.execute(q)
        ]


def last_minute(store: Store, scope: str) -> list[tuple[float, int]]:
    """The requests of a key (``key:<id>``) or team (``team:<id>``) in the last 60 s: (seconds ago, tokens)."""
    kind, ident = scope.split(":", 1)
    column = Trace.api_key_id if kind == "key" else Trace.team_id
    now = datetime.now(UTC)
    with store.session() as s:
        rows = s.execute(
            select(Trace.created_at, Trace.prompt_tokens + Trace.completion_tokens).where(
                column == ident, Trace.created_at >= now - timedelta(seconds=60)
            )
        ).all()
    return [((now - _aware(created)).total_seconds(), int(tokens or 0)) for created, tokens in rows]


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when
