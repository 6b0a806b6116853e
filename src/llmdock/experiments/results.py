"""What each variant of an experiment did, read from the traces the gateway tagged and the feedback on them.

The database adds it up: one grouped query over the experiment's traces (by the ``llmdock.experiment``
attribute, since its start) gives per variant and status the requests, guard blocks, tokens, cost and the
answered requests' latency sums; the median and 95th percentile latencies are read off the index in latency
order (PostgreSQL: ``percentile_cont`` in the same grouped query); one join gives the feedback on the
experiment's traces. No trace row reaches Python (reading the 20,000 traces of an experiment over 2 % of a
million, and their feedback in batches of ids, took ~230 ms). What ``llmdock experiments status`` reports, and
where a worker's guard-rail counters start (``guard_tally``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from llmdock.errors import GuardBlocked
from llmdock.experiments.live import EXPERIMENT, VARIANT
from llmdock.experiments.sequential import Moments
from llmdock.store.engine import Store
from llmdock.store.experiment_rows import ExperimentRow
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.models import Trace
from llmdock.store.ui_rows import trace_attribute  # as the experiment index is written

BLOCKED = GuardBlocked.code + ":"
EVALUATOR = "evaluator"  # feedback from an automatic evaluator (online evaluation): reported on its own
QUANTILES = (0.5, 0.95)


@dataclass(frozen=True, slots=True)
class Latencies:
    """The answered requests' latencies as the report needs them: their moments (Welch's test and the
    sequential one need no more), the median and 95th percentile (numpy's linear interpolation, as
    ``percentile_cont``), and how many were slower than the experiment's latency bound (its guard rail)."""

    moments: Moments = field(default_factory=Moments)
    p50_ms: float = math.nan
    p95_ms: float = math.nan
    slow: int = 0

    @classmethod
    def of(cls, values: Sequence[float], slower_than: float | None = None) -> Latencies:
        if not values:
            return cls()
        p50, p95 = (float(np.percentile(values, 100 * q)) for q in QUANTILES)
        slow = 0 if slower_than is None else sum(ms > slower_than for ms in values)
        return cls(Moments.of(values), p50, p95, slow)


@dataclass
class VariantStats:
    name: str
    n: int = 0
    errors: int = 0
    blocked: int = 0  # refused by a guard (counted in errors too)
    latency: Latencies = field(default_factory=Latencies)  # of the answered requests (status ok)
    tokens: float = 0.0  # the answered requests' prompt and completion tokens, summed
    cost: float = 0.0
    scores: dict[str, list[float]] = field(default_factory=dict)  # feedback values by score name
    online: dict[str, list[float]] = field(
        default_factory=dict
    )  # online-evaluation scores (source evaluator)

    def rate(self, count: int) -> float:
        return count / self.n if self.n else math.nan

    @property
    def answered(self) -> int:
        return self.latency.moments.n

    @property
    def p50_ms(self) -> float:
        return self.latency.p50_ms

    @property
    def p95_ms(self) -> float:
        return self.latency.p95_ms


def _tagged(row: ExperimentRow) -> list[ColumnElement[bool]]:
    """The experiment's traces (the index ``ix_traces_ui_experiment`` serves this)."""
    return [trace_attribute(EXPERIMENT) == row.name, Trace.created_at >= row.starts_at]


def variant_stats(store: Store, row: ExperimentRow) -> dict[str, VariantStats]:
    """Per variant (in the experiment's order): requests, errors, guard blocks, latency, tokens, cost,
    feedback scores, and the online-evaluation scores (feedback of source ``evaluator``) apart."""
    stats = {v["name"]: VariantStats(v["name"]) for v in row.variants}
    bound = (row.guard or {}).get("max_p50_ms")
    with store.session() as s:
        for r in s.execute(_grouped(s, row, None if bound is None else float(bound))):
            v = stats.get("" if r.variant is None else str(r.variant))
            if v is None:
                continue
            v.n += r.n
            v.errors += r.n if r.status == "error" else 0
            v.blocked += int(r.blocked or 0)
            v.cost += float(r.cost or 0.0)
            if r.status == "ok":
                v.tokens = float(r.tokens or 0)
                p50, p95, constant = _ranked(s, row, r)
                moments = Moments.of_sums(r.n, float(r.total_ms), float(r.squares), constant)
                v.latency = Latencies(moments, p50, p95, int(r.slow or 0))
        _feedback(s, row, stats)
    return stats


def _grouped(session: Session, row: ExperimentRow, bound: float | None) -> Any:
    variant = trace_attribute(VARIANT)
    ms = Trace.duration_ms
    columns = [
        variant.label("variant"),
        Trace.status,
        func.count().label("n"),
        func.sum(case((Trace.error.startswith(BLOCKED, autoescape=True), 1), else_=0)).label("blocked"),
        func.sum(Trace.prompt_tokens + Trace.completion_tokens).label("tokens"),
        func.sum(Trace.cost).label("cost"),
        func.sum(ms).label("total_ms"),
        func.sum(ms * ms).label("squares"),
        func.sum(case((ms > bound, 1), else_=0) if bound is not None else 0).label("slow"),
    ]
    if session.get_bind().dialect.name == "postgresql":
        columns += [func.min(ms).label("min_ms"), func.max(ms).label("max_ms")]
        columns += [func.percentile_cont(q).within_group(ms).label(f"p{round(100 * q)}") for q in QUANTILES]
    # (not on SQLite: a max() here made it read every trace's row, 140 MB at 1M traces, beside the index)
    return select(*columns).where(*_tagged(row)).group_by(variant, Trace.status)


def _ranked(session: Session, row: ExperimentRow, r: Any) -> tuple[float, float, bool]:
    """The answered requests' median and 95th percentile latency, and whether every latency is the same:
    PostgreSQL computed them; on SQLite the latencies at the ranks needed are read in the index's latency
    order (the time is compared inside ``likely()``: given it bare, SQLite's planner took the status index
    on (status, created_at) and sorted 980,000 rows)."""
    if session.get_bind().dialect.name == "postgresql":
        return float(r.p50), float(r.p95), r.min_ms == r.max_ms
    since = func.likely(Trace.created_at >= row.starts_at)  # a function: no index seeks on it
    ranked = (
        select(Trace.duration_ms)
        .where(trace_attribute(EXPERIMENT) == row.name, since)
        .where(trace_attribute(VARIANT) == r.variant, Trace.status == "ok")
        .order_by(Trace.duration_ms)
    )

    def at(rank: int, n: int = 1) -> list[float]:
        return [float(v) for v in session.scalars(ranked.offset(rank).limit(n))]

    found = []
    for q in QUANTILES:
        place = q * (r.n - 1)
        low = math.floor(place)
        pair = at(low, 2)
        found.append(pair[0] if len(pair) == 1 else pair[0] + (pair[1] - pair[0]) * (place - low))
    return found[0], found[1], at(0) == at(r.n - 1)


def _feedback(session: Session, row: ExperimentRow, stats: dict[str, VariantStats]) -> None:
    """The feedback on the experiment's traces, by variant and score name (in the order it was given)."""
    q = (
        select(trace_attribute(VARIANT), FeedbackRow.name, FeedbackRow.value, FeedbackRow.source)
        .join(Trace, Trace.id == FeedbackRow.trace_id)
        .where(*_tagged(row), FeedbackRow.value.is_not(None))
        .order_by(FeedbackRow.created_at, FeedbackRow.id)
    )
    for variant, name, value, source in session.execute(q):
        v = stats.get("" if variant is None else str(variant))
        if v is not None:
            (v.online if source == EVALUATOR else v.scores).setdefault(name, []).append(float(value or 0.0))
