"""Metrics computed from the stored traces, per model and time window: what alert rules are evaluated on.

Computed in the store's process from the columns every trace has (status, duration, cost, tokens, error), so
they agree with `llmdock traces` and hold for every worker and every way in (gateway, CLI, evaluations).
``online_eval:NAME`` is the mean of an online-evaluation score over the traces it scored (monitor/scores.py).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import select

from llmdock.config.monitor_settings import ONLINE_EVAL
from llmdock.monitor.scores import load_scores
from llmdock.store.engine import Store
from llmdock.store.models import Trace


@dataclass(frozen=True, slots=True)
class TraceFacts:
    """What the metrics need of one trace."""

    model: str
    created_at: datetime
    failed: bool
    blocked: bool  # refused by a guard
    duration_ms: float
    cost: float
    tokens: int
    score: float = math.nan  # online_eval:NAME facts: the trace's score


def load_facts(store: Store, since: datetime, until: datetime, models: list[str]) -> list[TraceFacts]:
    """The traces created in ``[since, until)`` (of ``models``, or all when empty), oldest first."""
    q = (
        select(
            Trace.model,
            Trace.created_at,
            Trace.status,
            Trace.error,
            Trace.duration_ms,
            Trace.cost,
            Trace.prompt_tokens,
            Trace.completion_tokens,
        )
        .where(Trace.created_at >= since, Trace.created_at < until)
        .order_by(Trace.created_at)
    )
    if models:
        q = q.where(Trace.model.in_(models))
    with store.session() as s:
        return [
            TraceFacts(
                row.model,
                row.created_at,
                row.status == "error",
                row.error.startswith("guard_blocked"),
                row.duration_ms,
                row.cost or 0.0,
                (row.prompt_tokens or 0) + (row.completion_tokens or 0),
            )
            for row in s.execute(q)
        ]


def load_metric_facts(
    store: Store, metric: str, since: datetime, until: datetime, models: list[str]
) -> list[TraceFacts]:
    """What ``metric`` is computed from: the traces, or for ``online_eval:NAME`` the traces NAME scored."""
    if not metric.startswith(ONLINE_EVAL):
        return load_facts(store, since, until, models)
    return [
        TraceFacts(f.model, f.created_at, False, False, 0.0, 0.0, 0, f.value)
        for f in load_scores(store, since, until, models, [metric.removeprefix(ONLINE_EVAL)])
    ]


def by_model(facts: Iterable[TraceFacts]) -> dict[str, list[TraceFacts]]:
    out: dict[str, list[TraceFacts]] = defaultdict(list)
    for f in facts:
        out[f.model].append(f)
    return out


def metric_value(metric: str, facts: list[TraceFacts]) -> float | None:
    """``metric`` over ``facts``; None when there are none (no traffic is no verdict, except for requests)."""
    if metric == "requests":
        return float(len(facts))
    if not facts:
        return None
    n = len(facts)
    if metric.startswith(ONLINE_EVAL):
        return statistics.fmean(f.score for f in facts)
    if metric == "error_rate":
        return sum(f.failed for f in facts) / n
    if metric == "guard_block_rate":
        return sum(f.blocked for f in facts) / n
    if metric == "cost":
        return sum(f.cost for f in facts)
    if metric == "tokens":
        return float(sum(f.tokens for f in facts))
    q = {"latency_p50_ms": 50, "latency_p95_ms": 95, "latency_p99_ms": 99}[metric]
    return float(np.percentile([f.duration_ms for f in facts], q))


def bucket_values(
    metric: str, facts: list[TraceFacts], start: datetime, width_s: float, count: int, min_requests: int
) -> list[float]:
    """``metric`` in each of ``count`` consecutive windows of ``width_s`` from ``start`` (those with at least
    ``min_requests`` traces): the baseline an anomaly is judged against."""
    buckets: list[list[TraceFacts]] = [[] for _ in range(count)]
    for f in facts:
        i = int((f.created_at - start).total_seconds() // width_s)
        if 0 <= i < count:
            buckets[i].append(f)
    values = []
    for bucket in buckets:
        if len(bucket) >= min_requests:
            v = metric_value(metric, bucket)
            if v is not None:
                values.append(v)
    return values


def zscore(value: float, baseline: list[float]) -> tuple[float, float, float]:
    """(z, mean, spread) of ``value`` against ``baseline``; the spread is floored at 5 % of the mean (and a
    tiny constant), so a perfectly flat baseline does not make every wobble an anomaly."""
    mean = statistics.fmean(baseline)
    spread = max(statistics.stdev(baseline) if len(baseline) > 1 else 0.0, 0.05 * abs(mean), 1e-9)
    return (value - mean) / spread, mean, spread
