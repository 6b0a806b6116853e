"""Drift per day, kept: each closed UTC day of a model's traffic compared with its reference by the drift
tests of ``monitor.drift`` (lengths and tokens: Kolmogorov-Smirnov; error, guard-block and refusal rates:
Fisher; languages: chi-square; online-evaluation scores: Kolmogorov-Smirnov), one row per statistic in
``ui_drift_days`` (statistic, p-value, Benjamini-Hochberg adjusted p-value over the day's tests, drifted or
not). The dashboard's monitoring page charts them over time (``ui.drift_chart``).

The reference is the model's stored one (``llmdock monitor reference set``) when it has one, else the
``REFERENCE_DAYS`` days before the day (a rolling reference: a sudden change shows, a slow one is absorbed).
No embedding model is loaded: the meaning and topic tests stay with ``llmdock monitor drift``. A day with
fewer than ``MIN_TRACES`` traces of the model gets no points. Days already kept are not computed again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import delete, select

from llmdock.monitor.drift import DriftRow, Summary, Window, drift, load_window
from llmdock.monitor.reference import get_reference
from llmdock.store.engine import Store
from llmdock.store.models import Trace
from llmdock.store.ui_rows import UiDriftDay

REFERENCE_DAYS = 7
MIN_TRACES = 20
DAY_FORMAT = "%Y-%m-%d"


@dataclass(frozen=True, slots=True)
class KeptDay:
    model: str
    day: str
    traces: int
    points: int  # statistics kept (0: too few traces, nothing kept)
    drifted: int


def closed_days(days: int, now: datetime | None = None) -> list[date]:
    """The last ``days`` UTC days before today, oldest first."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    return [today - timedelta(days=i) for i in range(days, 0, -1)]


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), UTC)
    return start, start + timedelta(days=1)


def models_seen(store: Store, since: datetime, until: datetime) -> list[str]:
    """The models with traces in ``[since, until)``."""
    q = select(Trace.model).distinct().where(Trace.created_at >= since, Trace.created_at < until)
    with store.session() as s:
        return sorted(m for m in s.scalars(q) if m)


def kept(store: Store, model: str, days: list[date]) -> set[str]:
    """Which of ``days`` have points kept for ``model``."""
    names = [d.strftime(DAY_FORMAT) for d in days]
    q = select(UiDriftDay.day).distinct().where(UiDriftDay.model == model, UiDriftDay.day.in_(names))
    with store.session() as s:
        return set(s.scalars(q))


def _p(value: float) -> float:
    return 1.0 if math.isnan(value) else value  # a test that could say nothing: no evidence of drift


async def keep_day(store: Store, model: str, day: date, *, alpha: float = 0.05) -> KeptDay:
    """Compare ``model``'s traffic on ``day`` with its reference and keep one row per statistic (replacing
    the day's earlier rows)."""
    start, end = _bounds(day)
    cur = await asyncio.to_thread(load_window, store, model, start, end)
    name = day.strftime(DAY_FORMAT)
    if cur.n < MIN_TRACES:
        return KeptDay(model, name, cur.n, 0, 0)
    stored = await asyncio.to_thread(get_reference, store, model)
    ref: Window | Summary
    if stored is not None:
        ref = stored.summary
    else:
        ref = await asyncio.to_thread(
            load_window, store, model, start - timedelta(days=REFERENCE_DAYS), start
        )
    found = await drift(ref, cur, None, alpha=alpha)
    await asyncio.to_thread(_write, store, model, name, cur.n, found)
    return KeptDay(model, name, cur.n, len(found), sum(r.drifted for r in found))


def _write(store: Store, model: str, day: str, traces: int, found: list[DriftRow]) -> None:
    now = datetime.now(UTC)
    with store.session() as s, s.begin():
        s.execute(delete(UiDriftDay).where(UiDriftDay.model == model, UiDriftDay.day == day))
        s.add_all(
            UiDriftDay(
                model=model,
                day=day,
                statistic=r.name[:200],
                test=r.test[:100],
                value=r.statistic if math.isfinite(r.statistic) else None,
                p_value=_p(r.p_value),
                adjusted_p=_p(r.adjusted_p),
                drifted=r.drifted,
                reference=r.reference[:200],
                current=r.current[:200],
                traces=traces,
                computed_at=now,
            )
            for r in found
        )


async def keep_drift_days(
    store: Store,
    days: int,
    models: list[str] | None = None,
    *,
    alpha: float = 0.05,
    again: bool = False,
    done: Callable[[KeptDay], None] | None = None,
) -> list[KeptDay]:
    """Keep the points of the last ``days`` closed UTC days for ``models`` (default: every model with traces
    in those days), skipping days kept already unless ``again``; ``done`` hears of each day kept."""
    wanted = closed_days(days)
    if models is None:
        models = await asyncio.to_thread(models_seen, store, _bounds(wanted[0])[0], _bounds(wanted[-1])[1])
    out: list[KeptDay] = []
    for model in models:
        skip = set() if again else await asyncio.to_thread(kept, store, model, wanted)
        for day in wanted:
            if day.strftime(DAY_FORMAT) in skip:
                continue
            result = await keep_day(store, model, day, alpha=alpha)
            out.append(result)
            if done is not None:
                done(result)
    return out
