"""Evaluation: suites run through the served pipeline, metric plugins, statistics, comparisons and gates."""

from llmdock.evaluate.case import (
    BaseMetric,
    Case,
    CaseResult,
    Check,
    Metric,
    MetricError,
    MetricFactory,
    Output,
    Score,
)

__all__ = [
    "BaseMetric",
    "Case",
    "CaseResult",
    "Check",
    "Metric",
    "MetricError",
    "MetricFactory",
    "Output",
    "Score",
]
