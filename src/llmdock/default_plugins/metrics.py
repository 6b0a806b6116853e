"""The built-in evaluation metrics (equals, contains, regex, BLEU, ROUGE, JSON schema, similarity…)."""

from __future__ import annotations

from llmdock.evaluate.case import MetricFactory
from llmdock.hookspecs import hookimpl


@hookimpl
def llmdock_metrics() -> list[MetricFactory]:
    from llmdock.evaluate.metrics import BUILTIN_METRICS

    return list(BUILTIN_METRICS)
