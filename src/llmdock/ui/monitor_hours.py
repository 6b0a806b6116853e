"""Hourly totals of the traces per team, model and key, for the monitoring charts and the usage page:
closed hours from ``ui_trace_hours``, the open one live.

Re-reading a week of a million traces on every view took 8 s on SQLite. An hour that ended more than
``SETTLE`` ago is aggregated once, per team, model and key, by the first view that needs it (one grouped
query over the missing span, on the ``created_at`` index) and kept; later views read the kept rows (a few
per hour, totalled in SQL per dimension asked for) plus the traces since the last closed hour. Traces stored later than ``SETTLE`` after their hour
(a journal replayed after a crash) and traces deleted by retention or erasure are not reflected in hours
already kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.exc import IntegrityError

from llmdock.errors import GuardBlocked
from llmdock.feedback import Scope
from llmdock.store.engine import Store
from llmdock.store.models import Trace
from llmdock.store.ui_rows import UiTraceHour

SETTLE = timedelta(minutes=10)
COMPUTED = "*"  # the team_id of the row that marks an hour as computed
HOUR_FORMAT = "%Y-%m-%d %H"
TOTALS = ("requests", "errors", "blocked", "sum_ms", "max_ms", "prompt_tokens", "completion_tokens", "cost")
MAX_MS = TOTALS.index("max_ms")
BLOCKED = GuardBlocked.code + ":"  # how a guard's refusal starts the trace's error


@dataclass(frozen=True, slots=True)
class Hour:
    """The totals (in ``TOTALS`` order) of one hour's traces of one team, model and key."""

    hour: str
    team: str
    model: str
    key: str
    totals: list[float]


def _hour_of(store: Store) -> Any:
    if store.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Trace.created_at), "YYYY-MM-DD HH24")
    return func.substr(Trace.created_at, 1, 13)  # SQLite keeps UTC text: "YYYY-MM-DD HH"


def _aggregate(store: Store, since: datetime, until: datetime, team: str | None) -> list[Hour]:
    """The hours of the traces in [since, until), of one team or (None) of every team."""
    hour = _hour_of(store).label("hour")
    dims = (hour, Trace.team_id, Trace.model, Trace.api_key_id)
    q = (
        select(
            *dims,
            func.count(),
            func.sum(case((Trace.status == "error", 1), else_=0)),
            func.sum(case((Trace.error.startswith(BLOCKED, autoescape=True), 1), else_=0)),
            func.sum(Trace.duration_ms),
            func.max(Trace.duration_ms),
            func.sum(Trace.prompt_tokens),
            func.sum(Trace.completion_tokens),
            func.sum(Trace.cost),
        )
        .where(Trace.created_at >= since, Trace.created_at < until)
        .group_by(*dims)
    )
    if team is not None:
        q = q.where(Trace.team_id == team)
    with store.session() as s:
        return [
            Hour(str(r[0]), r[1] or "", r[2] or "", r[3] or "", [float(v or 0) for v in r[4:]])
            for r in s.execute(q)
        ]


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
    zero = dict.fromkeys(TOTALS, 0)
    rows = [{"hour": h, "team_id": COMPUTED, "model": "", "api_key_id": "", **zero} for h in keys]
    rows += [
        {
            "hour": h.hour,
            "team_id": h.team,
            "model": h.model,
            "api_key_id": h.key,
            **dict(zip(TOTALS, h.totals, strict=True)),
        }
        for h in found
        if h.hour in keys
    ]
    try:
        with store.session() as s, s.begin():
            s.execute(insert(UiTraceHour), rows)
    except IntegrityError:  # another worker kept them first: theirs are the same
        pass


def _label(h: Hour, dim: str) -> str:
    return {"hour": h.hour, "day": h.hour[:10], "model": h.model, "team": h.team, "key": h.key}[dim]


def totals_by(
    store: Store, scope: Scope, hours: int, dims: tuple[str, ...]
) -> dict[str, dict[str, list[float]]]:
    """The scope's traces of the last ``hours`` hours (the open one included), totalled (``TOTALS``) per value
    of each dimension in ``dims`` (``hour``, ``day``, ``model``, ``team``, ``key``): one grouped query over
    the kept hours per dimension, plus the open hour's traces."""
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    closed = (now - SETTLE).replace(minute=0, second=0, microsecond=0)
    _keep_missing(store, start, closed)
    t = UiTraceHour
    columns = {
        "hour": t.hour,
        "day": func.substr(t.hour, 1, 10),
        "model": t.model,
        "team": t.team_id,
        "key": t.api_key_id,
    }
    sums = [func.max(t.max_ms) if n == "max_ms" else func.sum(getattr(t, n)) for n in TOTALS]
    out: dict[str, dict[str, list[float]]] = {}
    with store.session() as s:
        for dim in dims:
            q = (
                select(columns[dim], *sums)
                .where(
                    t.hour >= start.strftime(HOUR_FORMAT),
                    t.hour < closed.strftime(HOUR_FORMAT),
                    t.team_id != COMPUTED,
                )
                .group_by(columns[dim])
            )
            if scope.team is not None:
                q = q.where(t.team_id == scope.team)
            out[dim] = {str(r[0]): [float(v or 0) for v in r[1:]] for r in s.execute(q)}
    for h in _aggregate(store, closed, now + timedelta(seconds=1), scope.team):
        for dim in dims:
            add(out[dim].setdefault(_label(h, dim), [0.0] * len(TOTALS)), h.totals)
    return out


def add(into: list[float], totals: list[float]) -> None:
    for i, v in enumerate(totals):
        into[i] = max(into[i], v) if i == MAX_MS else into[i] + v


def hourly(store: Store, scope: Scope, hours: int) -> dict[str, list[float]]:
    """Columns for the charts, one value per hour with traffic: unix time, requests, errors, guard blocks,
    mean and max latency (ms), cost."""
    per_hour = totals_by(store, scope, hours, ("hour",))["hour"]
    names = ("t", "requests", "errors", "blocked", "mean_ms", "max_ms", "cost")
    cols: dict[str, list[float]] = {k: [] for k in names}
    for hour in sorted(per_hour):
        n, errors, blocked, sum_ms, max_ms, _, _, cost = per_hour[hour]
        at = datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=UTC).timestamp()
        values = (at, n, errors, blocked, sum_ms / n if n else 0.0, max_ms, cost)
        for key, value in zip(names, values, strict=True):
            cols[key].append(round(value, 6))
    return cols
