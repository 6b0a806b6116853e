"""The built-in evaluation metrics (equals, contains, regex, BLEU, ROUGE, JSON schema, similarity…), the
guard detectors as metrics (``guard:toxicity``…) and the LLM judge (``llm-rubric``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.hookspecs import hookimpl

if TYPE_CHECKING:
    from llmdock.evaluate.case import MetricFactory


@hookimpl
def llmdock_metrics() -> list[MetricFactory]:
    from llmdock.evaluate.metrics import BUILTIN_METRICS
    from llmdock.evaluate.metrics.guards import GUARD_METRICS
    from llmdock.evaluate.metrics.judge import JUDGE_METRICS

    return [*BUILTIN_METRICS, *GUARD_METRICS, *JUDGE_METRICS]
