"""Semantic similarity: the cosine of the output's and the reference's vectors from the configured
embedding model (``env.embed``), the same model the gateway's ``/v1/embeddings`` serves by default."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.evaluate.case import Case, Check, MetricError, Output, Score
from llmdock.evaluate.metrics.base import SIMILARITY_THRESHOLD, ComparisonMetric

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv


class SimilarMetric(ComparisonMetric):
    name = "similar"
    needs_env = True
    what_it_uses = "embedding model"
    description = (
        "Cosine similarity of the output's and `value`'s (else the case's `expected`) embeddings from the "
        "configured embedding model (`default_embedding_model`), -1..1. Passes at 0.5 unless a threshold "
        "is set. Needs a local runtime."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        assert env is not None  # needs_env: BaseMetric refused None
        self.models = env

    async def score(self, case: Case, output: Output) -> Score:
        target = self.target(case)
        embedded = await self.models.embed([output.text, target])
        if embedded is None:
            raise MetricError(
                f"{self.check.label}: no embedding model is configured (default_embedding_model), "
                f"so case {case.id} ({case.where}) cannot be scored"
            )
        import numpy as np  # here, not at the top: registering the metrics must not load numpy

        first, second = (np.asarray(vector, dtype=np.float64) for vector in embedded.vectors)
        norms = float(np.linalg.norm(first) * np.linalg.norm(second))
        value = float(first @ second) / norms if norms else 0.0
        return Score(value, self.passes(value, SIMILARITY_THRESHOLD))


SEMANTIC_METRICS = (SimilarMetric,)
