"""Hourly totals of the traces for the monitoring charts: closed hours from ``ui_trace_hours``, the open one
live.

Re-reading a week of a million traces on every view took 8 s on SQLite. An hour that ended more than
``SETTLE`` ago is aggregated once, per team, by the first view that needs it (one grouped query over the
missing span, on the ``created_at`` index) and kept; later views read at most 168 small rows per team plus
the traces since the last closed hour. Traces stored later than ``SETTLE`` after their hour (a journal
replayed after a crash) and traces deleted by retention or erasure are not reflected in hours already kept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError

from llmdock.feedback import Scope
from llmdock.store.engine import Store
from llmdock.store.models import Trace
from llmdock.store.ui_rows import UiTraceHour

SETTLE = timedelta(minutes=10)
COMPUTED = "*"  # the team_id of the row that marks an hour as computed
HOUR_FORMAT = "%Y-%m-%d %H"
Totals = list[float]  # requests, errors, sum of ms, max ms, cost


def _hour_of(store: Store) -> Any:
    if store.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Trace.created_at), "YYYY-MM-DD HH24")
    return func.substr(Trace.created_at, 1, 13)  # SQLite keeps UTC text: "YYYY-MM-DD HH"


def _aggregate(
    store: Store, since: datetime, until: datetime, team: str | None
) -> dict[tuple[str, str], Totals]:
    """{(hour, team_id): totals} of the traces in [since, until), of one team or (None) of every team."""
    hour = _hour_of(store).label("hour")
    q = (
        select(
            hour,
            Trace.team_id,
            func.count(),
            func.sum(case((Trace.status == "error", 1), else_=0)),
            func.sum(Trace.duration_ms),
            func.max(Trace.duration_ms),
            func.sum(Trace.cost),
        )
        .where(Trace.created_at >= since, Trace.created_at < until)
        .group_by(hour, Trace.team_id)
    )
    if team is not None:
        q = q.where(Trace.team_id == team)
    with store.session() as s:
        return {(str(r[0]), str(r[1])): [float(v or 0) for v in r[2:]] for r in s.execute(q)}


def _keep_missing(store: Store, start: datetime, closed: datetime) -> None:
    """Aggregate and keep the closed hours in [start, closed) not kept yet."""
    wanted = [start + timedelta(hours=i) for i in range(int((closed - start) / timedelta(hours=1)))]
    with store.session() as s:
        done = set(
            s.scalars(
                select(UiTraceHour.hour).where(
                    UiTraceHour.team_id == COMPUTED, UiTraceHour.hour >= start.strftime(HOUR_FORMAT)
                )
            )
        )
    missing = [h for h in wanted if h.strftime(HOUR_FORMAT) not in done]
    if not missing:
        return
    keys = {h.strftime(HOUR_FORMAT) for h in missing}
    found = _aggregate(store, missing[0], missing[-1] + timedelta(hours=1), None)
    rows = [
        UiTraceHour(hour=h, team_id=COMPUTED, requests=0, errors=0, sum_ms=0, max_ms=0, cost=0) for h in keys
    ]
    rows += [
        UiTraceHour(
            hour=h, team_id=t, requests=int(v[0]), errors=int(v[1]), sum_ms=v[2], max_ms=v[3], cost=v[4]
        )
        for (h, t), v in found.items()
        if h in keys
    ]
    try:
        with store.session() as s, s.begin():
            s.add_all(rows)
    except IntegrityError:  # another worker kept them first: theirs are the same
        pass


def hourly(store: Store, scope: Scope, hours: int) -> dict[str, list[float]]:
    """Columns for the charts, one value per hour with traffic: unix time, requests, errors, mean and max
    latency (ms), cost."""
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    closed = (now - SETTLE).replace(minute=0, second=0, microsecond=0)
    _keep_missing(store, start, closed)
    q = select(UiTraceHour).where(
        UiTraceHour.hour >= start.strftime(HOUR_FORMAT),
        UiTraceHour.hour < closed.strftime(HOUR_FORMAT),
        UiTraceHour.team_id != COMPUTED,
    )
    if scope.team is not None:
        q = q.where(UiTraceHour.team_id == scope.team)
    per_hour: dict[str, Totals] = {}
    with store.session() as s:
        kept = [(r.hour, [r.requests, r.errors, r.sum_ms, r.max_ms, r.cost]) for r in s.scalars(q)]
    live = _aggregate(store, closed, now + timedelta(seconds=1), scope.team)
    for h, v in [*kept, *((h, v) for (h, _), v in live.items())]:
        total = per_hour.setdefault(h, [0.0, 0.0, 0.0, 0.0, 0.0])
        total[0] += v[0]
        total[1] += v[1]
        total[2] += v[2]
        total[3] = max(total[3], v[3])
        total[4] += v[4]
    cols: dict[str, list[float]] = {k: [] for k in ("t", "requests", "errors", "mean_ms", "max_ms", "cost")}
    for h in sorted(per_hour):
        n, errors, sum_ms, max_ms, cost = per_hour[h]
        at = datetime.strptime(h, HOUR_FORMAT).replace(tzinfo=UTC).timestamp()
        for key, value in zip(cols, (at, n, errors, sum_ms / n if n else 0.0, max_ms, cost), strict=True):
            cols[key].append(round(value, 6))
    return cols
