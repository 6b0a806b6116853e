"""The built-in evaluation metrics (equals, contains, regex, BLEU, ROUGE, JSON schema, similarity…), the
guard detectors as metrics (``guard:toxicity``…) and the LLM judge (``llm-rubric``)."""

from __future__ import annotations

from llmdock.evaluate.case import MetricFactory
from llmdock.hookspecs import hookimpl


@hookimpl
def llmdock_metrics() -> list[MetricFactory]:
    from llmdock.evaluate.metrics import BUILTIN_METRICS
    from llmdock.evaluate.metrics.guards import GUARD_METRICS
    from llmdock.evaluate.metrics.judge import JUDGE_METRICS

    return [*BUILTIN_METRICS, *GUARD_METRICS, *JUDGE_METRICS]
