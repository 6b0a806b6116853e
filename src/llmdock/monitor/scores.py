"""Online-evaluation scores as time series: per model and metric, by the time the scored trace was answered.

The scores are feedback rows of source ``evaluator`` (monitor/online_eval.py writes them); joined with their
traces they give each score its model and time. ``llmdock monitor scores`` prints them per day (mean, 95 %
interval, count), alert rules take ``online_eval:NAME`` as a metric, and drift compares their distributions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from llmdock.monitor.online_rules import SOURCE
from llmdock.store.engine import Store
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.models import Trace

if TYPE_CHECKING:
    from llmdock.evaluate.stats import Estimate


@dataclass(frozen=True, slots=True)
class ScoreFact:
    model: str
    created_at: datetime  # when the scored trace was answered
    name: str
    value: float


def load_scores(
    store: Store,
    since: datetime,
    until: datetime,
    models: Iterable[str] = (),
    names: Iterable[str] = (),
) -> list[ScoreFact]:
    """The scores of traces answered in ``[since, until)`` (of ``models`` / ``names``, or all), oldest first."""
    q = (
        select(Trace.model, Trace.created_at, FeedbackRow.name, FeedbackRow.value)
        .join(Trace, Trace.id == FeedbackRow.trace_id)
        .where(
            FeedbackRow.source == SOURCE,
            FeedbackRow.value.is_not(None),
            Trace.created_at >= since,
            Trace.created_at < until,
        )
        .order_by(Trace.created_at)
    )
    models, names = list(models), list(names)
    if models:
        q = q.where(Trace.model.in_(models))
    if names:
        q = q.where(FeedbackRow.name.in_(names))
    with store.session() as s:
        return [ScoreFact(m, at, n, float(v or 0.0)) for m, at, n, v in s.execute(q)]


def by_name(facts: Iterable[ScoreFact]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for f in facts:
        out[f.name].append(f.value)
    return dict(out)


def daily(facts: Iterable[ScoreFact]) -> list[tuple[date, str, Estimate]]:
    """Per day (UTC) and metric: the mean score with its 95 % bootstrap interval and count."""
    from llmdock.evaluate.stats import (
        mean_ci,  # scipy: not at the gateway's start (alerts import this module)
    )

    groups: dict[tuple[date, str], list[float]] = defaultdict(list)
    for f in facts:
        groups[(f.created_at.date(), f.name)].append(f.value)
    return [(day, name, mean_ci(values)) for (day, name), values in sorted(groups.items())]
