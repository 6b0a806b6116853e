"""What each variant of an experiment did, read from the traces the gateway tagged and the feedback on them.

One query for the experiment's traces (by the ``llmdock.experiment`` attribute, since its start) and one for
their feedback: what ``llmdock experiments status`` reports, and where a worker's guard-rail counters start
(``guard_tally``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from sqlalchemy import select

from llmdock.errors import GuardBlocked
from llmdock.experiments.live import EXPERIMENT, VARIANT
from llmdock.store.engine import Store
from llmdock.store.experiment_rows import ExperimentRow
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.models import Trace
from llmdock.store.ui_rows import trace_attribute  # as the experiment index is written

BLOCKED = GuardBlocked.code + ":"
EVALUATOR = "evaluator"  # feedback from an automatic evaluator (online evaluation): reported on its own
# id, variant, status, error, duration_ms, tokens, cost
TraceFacts = tuple[str, str | None, str, str, float, int, float | None]


@dataclass
class VariantStats:
    name: str
    n: int = 0
    errors: int = 0
    blocked: int = 0  # refused by a guard (counted in errors too)
    latencies_ms: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    cost: float = 0.0
    scores: dict[str, list[float]] = field(default_factory=dict)  # feedback values by score name
    online: dict[str, list[float]] = field(
        default_factory=dict
    )  # online-evaluation scores (source evaluator)

    def rate(self, count: int) -> float:
        return count / self.n if self.n else math.nan

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50)) if self.latencies_ms else math.nan

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 95)) if self.latencies_ms else math.nan


def variant_stats(store: Store, row: ExperimentRow) -> dict[str, VariantStats]:
    """Per variant (in the experiment's order): requests, errors, guard blocks, latency, tokens, cost,
    feedback scores, and the online-evaluation scores (feedback of source ``evaluator``) apart."""
    stats = {v["name"]: VariantStats(v["name"]) for v in row.variants}
    q = select(
        Trace.id,
        trace_attribute(VARIANT),  # the one attribute read (decoding every trace's attributes cost more)
        Trace.status,
        Trace.error,
        Trace.duration_ms,
        Trace.prompt_tokens + Trace.completion_tokens,
        Trace.cost,
    ).where(Trace.created_at >= row.starts_at, trace_attribute(EXPERIMENT) == row.name)
    variant_of: dict[str, str] = {}
    with store.session() as s:
        for tid, variant, status, error, ms, tokens, cost in cast(Iterable[TraceFacts], s.execute(q)):
            v = stats.get("" if variant is None else str(variant))
            if v is None:
                continue
            variant_of[tid] = v.name
            v.n += 1
            v.errors += status == "error"
            v.blocked += error.startswith(BLOCKED)
            if status == "ok":
                v.latencies_ms.append(ms)
                v.tokens.append(tokens)
            v.cost += cost or 0.0
        ids = list(variant_of)
        for i in range(0, len(ids), 500):
            fq = select(FeedbackRow.trace_id, FeedbackRow.name, FeedbackRow.value, FeedbackRow.source).where(
                FeedbackRow.trace_id.in_(ids[i : i + 500]), FeedbackRow.value.is_not(None)
            )
            for tid, name, value, source in s.execute(fq):
                v = stats[variant_of[tid]]
                (v.online if source == EVALUATOR else v.scores).setdefault(name, []).append(
                    float(value or 0.0)
                )
    return stats
