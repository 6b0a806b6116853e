"""Usage and cost summaries over the traces: by day (UTC), model and deployment, from the hourly totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from llmdock.store import usage_hours
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


def usage_summary(store: Store, *, days: int = 7, model: str | None = None) -> list[UsageRow]:
    """The traces of the last ``days`` days, totalled per UTC day, model and deployment (newest day first),
    from the kept hourly totals (store/usage_hours.py) and the traces at the window's edges."""
    now = datetime.now(UTC)
    found = usage_hours.totals(
        store, now - timedelta(days=days), now, ("day", "model", "deployment"), model=model
    )
    at = {n: usage_hours.TOTALS.index(n) for n in usage_hours.TOTALS}
    rows = [
        UsageRow(
            day,
            m,
            deployment,
            int(t[at["requests"]]),
            int(t[at["errors"]]),
            int(t[at["cache_hits"]]),
            int(t[at["prompt_tokens"]]),
            int(t[at["completion_tokens"]]),
            t[at["cost"]],
        )
        for (day, m, deployment), t in found.items()
    ]
    rows.sort(key=lambda r: (r.model, r.deployment))
    rows.sort(key=lambda r: r.day, reverse=True)
    return rows


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
