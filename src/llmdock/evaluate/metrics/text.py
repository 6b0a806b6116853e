"""Text checks that pass or fail (score 1 or 0): equals, contains, icontains, not-contains, starts-with, regex.

The type names are promptfoo's. Each passes at 1 unless the check sets another threshold.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from llmdock.evaluate.case import Case, Check, MetricError, Output, Score
from llmdock.evaluate.metrics.base import ComparisonMetric, clip

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv


class _BooleanMetric(ComparisonMetric):
    """Scores 1 when ``holds`` is true of the output and the compared text, else 0."""

    def holds(self, output: str, target: str) -> bool:
        raise NotImplementedError

    async def score(self, case: Case, output: Output) -> Score:
        target = self.target(case)
        value = 1.0 if self.holds(output.text, target) else 0.0
        passed = self.passes(value)
        return Score(value, passed, "" if passed else f"{self.name} {clip(target)}: got {clip(output.text)}")


class EqualsMetric(_BooleanMetric):
    name = "equals"
    description = (
        "1 when the output equals `value` (else the case's `expected`), both stripped of surrounding "
        "whitespace; else 0. Passes at 1."
    )

    def holds(self, output: str, target: str) -> bool:
        return output.strip() == target.strip()


class ContainsMetric(_BooleanMetric):
    name = "contains"
    description = "1 when the output contains `value` (else the case's `expected`); else 0. Passes at 1."

    def holds(self, output: str, target: str) -> bool:
        return target in output


class IContainsMetric(_BooleanMetric):
    name = "icontains"
    description = (
        "1 when the output contains `value` (else the case's `expected`), ignoring case; else 0. Passes at 1."
    )

    def holds(self, output: str, target: str) -> bool:
        return target.casefold() in output.casefold()


class NotContainsMetric(_BooleanMetric):
    name = "not-contains"
    needs_reference = False
    value_required = True
    description = "1 when the output does not contain `value` (required); else 0. Passes at 1."

    def holds(self, output: str, target: str) -> bool:
        return target not in output


class StartsWithMetric(_BooleanMetric):
    name = "starts-with"
    description = (
        "1 when the output, leading whitespace aside, starts with `value` (else the case's `expected`); "
        "else 0. Passes at 1."
    )

    def holds(self, output: str, target: str) -> bool:
        return output.lstrip().startswith(target)


class RegexMetric(_BooleanMetric):
    name = "regex"
    needs_reference = False
    value_required = True
    description = (
        "1 when the pattern in `value` (Python `re` syntax, required) matches anywhere in the output; "
        "else 0. Passes at 1."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        assert self.value is not None  # value_required
        try:
            self.pattern = re.compile(self.value)
        except re.error as exc:
            raise MetricError(f"{check.label}: bad pattern {self.value!r}: {exc}") from exc

    def holds(self, output: str, target: str) -> bool:
        return self.pattern.search(output) is not None


TEXT_METRICS = (
    EqualsMetric,
    ContainsMetric,
    IContainsMetric,
    NotContainsMetric,
    StartsWithMetric,
    RegexMetric,
)
