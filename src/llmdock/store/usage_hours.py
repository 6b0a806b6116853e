"""Totals of the traces over a time window, per hour, day, team, model, deployment or API key, read from the
hourly totals kept in ``usage_hours`` (store/usage_rows.py) rather than from the traces: ``llmdock usage``,
``GET /admin/usage`` and the dashboard's usage and monitoring pages all read these.

Summing a week of ten million traces took 12 s on PostgreSQL. An hour that ended more than ``SETTLE`` ago is
aggregated once (one grouped query over the missing span, on the ``created_at`` index) by the first query that
needs it, and kept; later queries add up the kept rows. What a window holds beyond whole kept hours — the
part of an hour at its start, the part of an hour at its end and the hours not settled yet — is aggregated
from the traces, so a window gives the totals its traces give, to the microsecond.

Deleting traces (retention, erasure) goes through ``forget``, which subtracts them from the kept rows in the
deleting transaction. A trace stored more than ``SETTLE`` after its hour (a journal replayed after a long
outage) is not in an hour already kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmdock.errors import GuardBlocked
from llmdock.store.engine import Store
from llmdock.store.models import Base, Trace
from llmdock.store.usage_days import as_days, day_rows, hour_rows, keep_days, whole_days
from llmdock.store.usage_rows import DIMS, KEPT, UsageHour

SETTLE = timedelta(minutes=10)
HOUR = timedelta(hours=1)
HOUR_FORMAT = "%Y-%m-%d %H"
TOTALS = (
    "requests",
    "errors",
    "blocked",
    "cache_hits",
    "sum_ms",
    "max_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost",
)
MAX_MS = TOTALS.index("max_ms")
BLOCKED = GuardBlocked.code + ":"  # how a guard's refusal starts the trace's error
COLUMNS = {"team": "team_id", "model": "model", "key": "api_key_id", "deployment": "deployment"}
GROUPS = ("day", *COLUMNS, "hour")  # what totals can be grouped by, in the order of the table's key

Totals = dict[tuple[str, ...], list[float]]  # per value of a group's columns, the ``TOTALS``


@dataclass(frozen=True, slots=True)
class Hour:
    """The totals (in ``TOTALS`` order) of one hour's traces of one team, model, deployment and key."""

    hour: str
    dims: tuple[str, ...]  # DIMS
    totals: list[float]


def _hour_of(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Trace.created_at), "YYYY-MM-DD HH24")
    return func.substr(Trace.created_at, 1, 13)  # SQLite keeps UTC text: "YYYY-MM-DD HH"


def _sums() -> list[Any]:
    """The ``TOTALS`` of a group of traces, in SQL."""
    return [
        func.count(),
        func.sum(case((Trace.status == "error", 1), else_=0)),
        func.sum(case((Trace.error.startswith(BLOCKED, autoescape=True), 1), else_=0)),
        func.sum(case((Trace.cache.in_(["hit", "semantic-hit"]), 1), else_=0)),
        func.sum(Trace.duration_ms),
        func.max(Trace.duration_ms),
        func.sum(Trace.prompt_tokens),
        func.sum(Trace.completion_tokens),
        func.sum(Trace.cost),
    ]


def _totalled(columns: Any) -> list[Any]:
    """The ``TOTALS`` of a group of kept rows (``columns``: the table's or a subquery's), in SQL."""
    return [func.max(columns[n]) if n == "max_ms" else func.sum(columns[n]) for n in TOTALS]


def aggregate(session: Session, condition: ColumnElement[bool]) -> list[Hour]:
    """The hours of the traces matching ``condition``."""
    hour = _hour_of(session).label("hour")
    dims = (hour, *(getattr(Trace, d) for d in DIMS))
    q = select(*dims, *_sums()).where(condition).group_by(*dims)
    n = 1 + len(DIMS)
    return [Hour(str(r[0]), tuple(v or "" for v in r[1:n]), _floats(r[n:])) for r in session.execute(q)]


def _piece(
    session: Session, lo: datetime, hi: datetime, group: Sequence[str], wanted: ColumnElement[bool]
) -> Totals:
    """The totals of the traces in [lo, hi), a span within one hour, per value of the ``group`` columns: the
    hour is known, so the traces are grouped by their columns alone (labelling each trace's hour in SQL
    doubled the time)."""
    hour = lo.strftime(HOUR_FORMAT)
    columns = [getattr(Trace, COLUMNS[g]) for g in group if g in COLUMNS]
    q = select(*columns, *_sums()).where(_between(lo, hi) & wanted).group_by(*columns)
    out = {}
    for r in session.execute(q):
        values = iter(r[: len(columns)])
        key = tuple(hour if g == "hour" else hour[:10] if g == "day" else next(values) or "" for g in group)
        out[key] = _floats(r[len(columns) :])
    return out


def _between(since: datetime, until: datetime) -> ColumnElement[bool]:
    return (Trace.created_at >= since) & (Trace.created_at < until)


def _hours(first: datetime, last: datetime) -> list[ColumnElement[bool]]:
    """The kept rows of the hours in [first, last): their days listed (the key's start: SQLite seeks each
    day, and within it a team, rather than reading the range) and the hours' range."""
    t = UsageHour
    days = range((last - HOUR).date().toordinal() - first.date().toordinal() + 1)
    return [
        t.day.in_([(first + timedelta(days=d)).strftime("%Y-%m-%d") for d in days]),
        t.hour >= first.strftime(HOUR_FORMAT),
        t.hour < last.strftime(HOUR_FORMAT),
        hour_rows(),
    ]


def keep(store: Store, start: datetime, end: datetime) -> None:
    """Aggregate and keep the hours in [start, end) (whole hours, closed) not kept yet."""
    wanted = [start + i * HOUR for i in range(int((end - start) / HOUR))]
    with store.session() as s:
        kept = set(s.scalars(select(UsageHour.hour).where(UsageHour.team_id == KEPT, *_hours(start, end))))
    missing = {h.strftime(HOUR_FORMAT): h for h in wanted if h.strftime(HOUR_FORMAT) not in kept}
    if not missing:
        return
    first, last = min(missing.values()), max(missing.values())
    zero = dict.fromkeys(TOTALS, 0)
    rows: list[dict[str, Any]] = [
        {"day": h[:10], "hour": h, **dict.fromkeys(DIMS, ""), "team_id": KEPT, **zero} for h in missing
    ]
    with store.session() as s:
        found = aggregate(s, _between(first, last + HOUR))
    rows += [_row(h) for h in found if h.hour in missing]
    try:
        with store.session() as s, s.begin():
            s.execute(insert(UsageHour), rows)
    except IntegrityError:  # another process kept them first: theirs are the same
        pass


def _row(h: Hour) -> dict[str, Any]:
    return {
        "day": h.hour[:10],
        "hour": h.hour,
        **dict(zip(DIMS, h.dims, strict=True)),
        **dict(zip(TOTALS, h.totals, strict=True)),
    }


def totals(
    store: Store,
    since: datetime,
    until: datetime,
    group: Sequence[str],
    *,
    model: str | None = None,
    team: str | None = None,
) -> Totals:
    """The totals (``TOTALS``) of the traces created in [since, until), per value of the ``group`` columns
    (from ``GROUPS``), of one model and one team if given."""
    return rollups(store, since, until, [tuple(group)], model=model, team=team)[0]


def rollups(
    store: Store,
    since: datetime,
    until: datetime,
    groups: Sequence[tuple[str, ...]],
    *,
    model: str | None = None,
    team: str | None = None,
) -> list[Totals]:
    """For each of ``groups``, the totals of the traces created in [since, until) per value of its columns
    (``totals``), from one read of the kept hours: the whole hours in between from the kept rows, the rest
    from the traces. When the window starts early in an hour, that hour is taken whole and the traces before
    the start subtracted (fewer traces to read; ``max_ms`` is then the whole hour's)."""
    first = _ceil_hour(since)
    last = min(_floor_hour(until), _floor_hour(datetime.now(UTC) - SETTLE))
    every = _streamed(groups)
    out: list[Totals] = [{} for _ in groups]
    spans = [(1, since, until)]  # (sign, start, end)
    if first < last:
        spans = [(1, since, first), (1, last, until)]
        if first - since > HOUR / 2:
            first -= HOUR
            spans = [(1, last, until), (-1, first, since)]
        keep(store, first, last)
        out = _kept(store, first, last, every, groups, _kept_where(model, team))
    wanted = _where(model, team)
    with store.session() as s:
        for sign, lo, hi in spans:
            while lo < hi:  # hour by hour
                end = min(hi, _floor_hour(lo) + HOUR)
                for key, found in _piece(s, lo, end, every, wanted).items():
                    for into, group in zip(out, groups, strict=True):
                        at = tuple(key[every.index(g)] for g in group)
                        add(into.setdefault(at, [0.0] * len(TOTALS)), [sign * v for v in found])
                lo = end
    return [{key: t for key, t in found.items() if t[0] > 0} for found in out]


def _streamed(groups: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The columns to group the kept rows by first: every one the groups name, in the key's order, and when
    that leaves out the hour, the key's columns up to the last one named (grouping by a start of the key
    streams on SQLite; a sort of a week's rows took three times as long)."""
    named = {g for group in groups for g in group}
    if "hour" in named:
        return tuple(g for g in GROUPS if g in named)
    return GROUPS[: max(GROUPS.index(g) for g in named) + 1]


def _where(model: str | None, team: str | None) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = true()
    if model is not None:
        condition = condition & (Trace.model == model)
    if team is not None:
        condition = condition & (Trace.team_id == team)
    return condition


def _kept_where(model: str | None, team: str | None) -> list[ColumnElement[bool]]:
    t = UsageHour
    return [
        t.team_id != KEPT,
        *([t.model == model] if model is not None else []),
        *([t.team_id == team] if team is not None else []),
    ]


def _kept(
    store: Store,
    first: datetime,
    last: datetime,
    every: tuple[str, ...],
    groups: Sequence[tuple[str, ...]],
    wanted: list[ColumnElement[bool]],
) -> list[Totals]:
    """The kept hours in [first, last) totalled per value of each group's columns. One group: one grouped
    query. Several: the rows grouped once by every column any group names, then per group from those. Rows
    are grouped in the key's order (``every``), so that SQLite streams them rather than sorting them."""
    t = UsageHour.__table__.c
    columns = {"hour": t.hour, "day": t.day, **{g: t[c] for g, c in COLUMNS.items()}}
    where = (_rows(store, first, last, "hour" not in every), *wanted)
    by = [columns[g] for g in every]
    if len(groups) == 1 and set(groups[0]) == set(every):
        q = select(*(columns[g] for g in groups[0]), *_totalled(t)).where(*where).group_by(*by)
        with store.session() as s:
            return [{_key(r[: len(groups[0])]): _floats(r[len(groups[0]) :]) for r in s.execute(q)}]
    once = select(*(c.label(g) for c, g in zip(by, every, strict=True)), *_labelled(_totalled(t)))
    once_cte = once.where(*where).group_by(*by).cte("once")
    widest = max(len(g) for g in groups)
    per_group = union_all(
        *(
            select(
                literal_column(str(i)),
                *(once_cte.c[g] for g in group),
                *[literal_column("''")] * (widest - len(group)),
                *_totalled(once_cte.c),
            ).group_by(*(once_cte.c[g] for g in group))
            for i, group in enumerate(groups)
        )
    )
    out: list[Totals] = [{} for _ in groups]
    with store.session() as s:
        for r in s.execute(per_group):
            i = int(r[0])
            out[i][_key(r[1 : 1 + len(groups[i])])] = _floats(r[1 + widest :])
    return out


def _rows(store: Store, first: datetime, last: datetime, days: bool) -> ColumnElement[bool]:
    """The kept rows of [first, last): with ``days``, its whole days' day rows (kept now if need be) and the
    hours of its part days; else every hour."""
    whole, start, end = whole_days(first, last) if days else ([], first, first)
    if not keep_days(store, whole, _totalled(UsageHour.__table__.c), TOTALS):
        return and_(*_hours(first, last))
    parts = [and_(*_hours(a, b)) for a, b in ((first, start), (end, last)) if a < b]
    return or_(day_rows(whole), *parts)


def _labelled(sums: list[Any]) -> list[Any]:
    return [s.label(n) for s, n in zip(sums, TOTALS, strict=True)]


def _key(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def _floats(values: Any) -> list[float]:
    return [float(v or 0) for v in values]


def forget(session: Session, ids: list[str]) -> None:
    """Subtract the traces ``ids`` from the kept hours: call it in the transaction that deletes them, before
    the delete. A row left with no request goes; ``max_ms`` stays what it was (an upper bound)."""
    found = aggregate(session, Trace.id.in_(ids)) if ids else []
    if not found:
        return
    t = Base.metadata.tables[UsageHour.__tablename__]  # the Table: an executemany, not an ORM bulk update
    names = ("day", "hour", *DIMS)
    key = [t.c[d] == bindparam("k_" + d) for d in names]
    less = {n: t.c[n] - bindparam("d_" + n) for n in TOTALS if n != "max_ms"}
    params = [
        {"k_" + d: v for d, v in zip(names, (h.hour[:10], h.hour, *h.dims), strict=True)}
        | {"d_" + n: v for n, v in zip(TOTALS, h.totals, strict=True) if n != "max_ms"}
        for h in found
    ]
    session.execute(update(t).where(*key).values(less), params)
    session.execute(update(t).where(*key).values(less), as_days(params))  # the day rows, where kept
    hours = sorted({h.hour for h in found})
    days = sorted({h[:10] for h in hours})
    empty = (t.c.team_id != KEPT, t.c.requests <= 0)
    session.execute(delete(t).where(t.c.day.in_(days), t.c.hour.in_(hours), *empty))
    session.execute(delete(t).where(t.c.day.in_(days), t.c.hour == t.c.day, *empty))


def add(into: list[float], totals: list[float]) -> None:
    for i, v in enumerate(totals):
        into[i] = max(into[i], v) if i == MAX_MS else into[i] + v


def _floor_hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(when: datetime) -> datetime:
    floor = _floor_hour(when)
    return floor if floor == when else floor + HOUR
