"""Whole-day totals beside the hourly ones in ``usage_hours`` (store/usage_hours.py): once every hour of a UTC
day is kept, the day's hourly rows are added up per team, model, key and deployment into rows whose ``hour``
is the day itself ("YYYY-MM-DD", sorting before the day's first hour), with a ``"*"`` row marking the day as
kept. A window's whole days are then read from these (the usage page: a week at a million traces is ~7,300
hourly rows a day against ~400 day rows), its first and last part days from the hours; a read grouped per
hour reads the hours only. Deleting traces subtracts them from the day rows as from the hours."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, select
from sqlalchemy.exc import IntegrityError

from llmdock.store.engine import Store
from llmdock.store.usage_rows import DIMS, KEPT, UsageHour

DAY = timedelta(days=1)


def hour_rows() -> ColumnElement[bool]:
    """The hourly rows (and hourly markers), not the day rows."""
    return UsageHour.hour > UsageHour.day


def day_rows(days: Sequence[str]) -> ColumnElement[bool]:
    return and_(UsageHour.day.in_(list(days)), UsageHour.hour == UsageHour.day)


def whole_days(first: datetime, last: datetime) -> tuple[list[str], datetime, datetime]:
    """The UTC days wholly inside [first, last) (whole hours), and where they start and end (both ``first``
    when there is none)."""
    start = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if start < first:
        start += DAY
    days = []
    end = start
    while end + DAY <= last:
        days.append(end.strftime("%Y-%m-%d"))
        end += DAY
    return (days, start, end) if days else ([], first, first)


def keep_days(store: Store, days: Sequence[str], totalled: list[Any], names: Sequence[str]) -> list[str]:
    """Add up the kept hours of each of ``days`` not kept as a day yet (every hour of each must be kept);
    returns the days kept as days now. ``totalled``: the ``TOTALS`` of a group of rows in SQL."""
    if not days:
        return []
    t = UsageHour
    with store.session() as s:
        done = set(s.scalars(select(t.day).where(day_rows(days), t.team_id == KEPT)))
    missing = [d for d in days if d not in done]
    if not missing:
        return list(days)
    dims = [getattr(t, d) for d in DIMS]
    rows = (
        select(t.day, *dims, t.day.label("hour"), *totalled)
        .where(t.day.in_(missing), hour_rows(), t.team_id != KEPT)
        .group_by(t.day, *dims)
    )
    marks = [
        {"day": d, "hour": d, **dict.fromkeys(DIMS, ""), "team_id": KEPT, **dict.fromkeys(names, 0)}
        for d in missing
    ]
    try:
        with store.session() as s, s.begin():
            s.execute(insert(t).from_select(["day", *DIMS, "hour", *names], rows))
            s.execute(insert(t), marks)
    except IntegrityError:  # another process kept them first: theirs are the same
        pass
    return list(days)


def as_days(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``forget``'s per-hour subtractions (``k_*`` keys, ``d_*`` amounts) summed per day, keyed on the day
    rows (``k_hour`` = the day)."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for p in params:
        key = (p["k_day"], *(p["k_" + d] for d in DIMS))
        into = out.setdefault(key, {**p, "k_hour": p["k_day"], **{k: 0 for k in p if k.startswith("d_")}})
        for k, v in p.items():
            if k.startswith("d_"):
                into[k] += v
    return list(out.values())
