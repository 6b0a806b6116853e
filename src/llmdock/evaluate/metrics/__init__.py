"""The built-in metrics, registered through the ``llmdock_metrics`` hook like any plugin's.

One module per family: ``text`` (equals, contains, regex…), ``overlap`` (token F1, BLEU, chrF, ROUGE),
``formats`` (JSON, JSON schema), ``usage`` (latency, tokens, cost), ``semantic`` (embedding similarity),
``perplexity`` (of the reference, from the model's log-probabilities), ``sentiment`` (VADER).
"""

from llmdock.evaluate.case import MetricFactory
from llmdock.evaluate.metrics.formats import FORMAT_METRICS
from llmdock.evaluate.metrics.overlap import OVERLAP_METRICS
from llmdock.evaluate.metrics.perplexity import PERPLEXITY_METRICS
from llmdock.evaluate.metrics.semantic import SEMANTIC_METRICS
from llmdock.evaluate.metrics.sentiment import SENTIMENT_METRICS
from llmdock.evaluate.metrics.text import TEXT_METRICS
from llmdock.evaluate.metrics.usage import USAGE_METRICS

BUILTIN_METRICS: tuple[MetricFactory, ...] = (
    *TEXT_METRICS,
    *OVERLAP_METRICS,
    *FORMAT_METRICS,
    *USAGE_METRICS,
    *SEMANTIC_METRICS,
    *PERPLEXITY_METRICS,
    *SENTIMENT_METRICS,
)

__all__ = ["BUILTIN_METRICS"]
