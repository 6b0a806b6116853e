"""What an answer cost: latency (ms), completion tokens, cost. The value is the figure itself; the check
passes when it stays at or under the threshold. Without a threshold the figure is recorded and always passes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.evaluate.case import BaseMetric, Case, Check, MetricError, Output, Score

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv


class _UsageMetric(BaseMetric):
    unit: str

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        if check.threshold is not None and check.threshold < 0:
            raise MetricError(f"{check.label}: threshold must be ≥ 0, not {check.threshold}")

    def figure(self, output: Output) -> float:
        raise NotImplementedError

    async def score(self, case: Case, output: Output) -> Score:
        value = self.figure(output)
        limit = self.check.threshold
        if limit is None or value <= limit:
            return Score(value, True)
        return Score(value, False, f"{value:g}{self.unit} > {limit:g}")


class LatencyMetric(_UsageMetric):
    name = "latency"
    unit = " ms"
    description = "The answer's latency in ms. Passes when ≤ the threshold; with none, records it and passes."

    def figure(self, output: Output) -> float:
        return output.latency_ms


class TokensMetric(_UsageMetric):
    name = "tokens"
    unit = " tokens"
    description = (
        "The answer's completion tokens. Passes when ≤ the threshold; with none, records them and passes."
    )

    def figure(self, output: Output) -> float:
        return float(output.completion_tokens)


class CostMetric(_UsageMetric):
    name = "cost"
    unit = ""
    description = (
        "The answer's cost (the model's configured prices). Passes when ≤ the threshold; with none, "
        "records it and passes."
    )

    def figure(self, output: Output) -> float:
        return output.cost


USAGE_METRICS = (LatencyMetric, TokensMetric, CostMetric)
