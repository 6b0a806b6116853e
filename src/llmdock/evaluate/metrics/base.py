"""What the built-in metrics share: reading a check's ``value`` and the text a case's output is compared with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmdock.evaluate.case import BaseMetric, Case, Check, MetricError

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv

SIMILARITY_THRESHOLD = 0.5
"""Where a similarity-type score (0..1) passes when the check gives no threshold."""


def text_value(check: Check, *, required: bool) -> str | None:
    """The check's ``value`` as text (numbers are written out); ``None`` when absent and not required."""
    value: Any = check.value
    if value is None:
        if required:
            raise MetricError(f"{check.label}: needs a `value`")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MetricError(f"{check.label}: `value` must be text, not {type(value).__name__}")
    return str(value)


def clip(text: str, limit: int = 60) -> str:
    """A short quotation of ``text`` for a score's reason."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


class ComparisonMetric(BaseMetric):
    """A metric that compares the output with a text: the check's ``value`` when it gives one, else the
    case's ``expected`` (a case without one is a MetricError naming the case)."""

    needs_reference = True
    value_required = False  # True: the check must give a value (the reference is never used)

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        self.value = text_value(check, required=self.value_required)

    def target(self, case: Case) -> str:
        return self.value if self.value is not None else self.reference(case)
