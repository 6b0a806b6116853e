"""Overlap with a reference (0..1): token F1 (SQuAD), BLEU and chrF (sacrebleu), ROUGE-1/2/L (rouge-score).

Each compares the output with the check's ``value`` when it gives one, else the case's ``expected``, and
passes at 0.5 unless the check sets a threshold. The scorers are built once per check (sacrebleu and
rouge-score are imported then, so a process that never scores them does not pay their import).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import TYPE_CHECKING, Any

from llmdock.evaluate.case import Case, Check, Output, Score
from llmdock.evaluate.metrics.base import SIMILARITY_THRESHOLD, ComparisonMetric

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def squad_tokens(text: str) -> list[str]:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token-level F1 of a prediction against one reference answer."""
    predicted, expected = squad_tokens(prediction), squad_tokens(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


class _OverlapMetric(ComparisonMetric):
    """Scores ``overlap(output, reference)`` in 0..1; passes at the threshold, else 0.5."""

    def overlap(self, output: str, reference: str) -> float:
        raise NotImplementedError

    async def score(self, case: Case, output: Output) -> Score:
        value = self.overlap(output.text, self.target(case))
        return Score(value, self.passes(value, SIMILARITY_THRESHOLD))


class TokenF1Metric(_OverlapMetric):
    name = "token-f1"
    description = (
        "SQuAD token F1 (lower case, no punctuation or articles) of the output against `value` "
        "(else the case's `expected`), 0..1. Passes at 0.5 unless a threshold is set."
    )

    def overlap(self, output: str, reference: str) -> float:
        return token_f1(output, reference)


class BleuMetric(_OverlapMetric):
    name = "bleu"
    description = (
        "Sentence BLEU (sacrebleu, 13a tokens, exp smoothing, effective order) of the output against "
        "`value` (else the case's `expected`), scaled to 0..1. Passes at 0.5 unless a threshold is set."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        from sacrebleu.metrics.bleu import BLEU

        self.scorer = BLEU(effective_order=True)  # what sacrebleu.sentence_bleu builds on every call

    def overlap(self, output: str, reference: str) -> float:
        return float(self.scorer.sentence_score(output, [reference]).score) / 100


class ChrfMetric(_OverlapMetric):
    name = "chrf"
    description = (
        "Sentence chrF (sacrebleu defaults: character 6-grams, beta 2) of the output against `value` "
        "(else the case's `expected`), scaled to 0..1. Passes at 0.5 unless a threshold is set."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        from sacrebleu.metrics.chrf import CHRF

        self.scorer = CHRF()

    def overlap(self, output: str, reference: str) -> float:
        return float(self.scorer.sentence_score(output, [reference]).score) / 100


class _RougeMetric(_OverlapMetric):
    rouge_type: str  # rouge-score's name: rouge1, rouge2, rougeL

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        from rouge_score.rouge_scorer import RougeScorer

        self.scorer: Any = RougeScorer([self.rouge_type], use_stemmer=True)

    def overlap(self, output: str, reference: str) -> float:
        return float(self.scorer.score(reference, output)[self.rouge_type].fmeasure)


def _rouge_description(what: str) -> str:
    return (
        f"ROUGE {what} F-measure (rouge-score, Porter stemming) of the output against `value` (else the "
        "case's `expected`), 0..1. Passes at 0.5 unless a threshold is set."
    )


class Rouge1Metric(_RougeMetric):
    name = "rouge-1"
    rouge_type = "rouge1"
    description = _rouge_description("unigram")


class Rouge2Metric(_RougeMetric):
    name = "rouge-2"
    rouge_type = "rouge2"
    description = _rouge_description("bigram")


class RougeLMetric(_RougeMetric):
    name = "rouge-l"
    rouge_type = "rougeL"
    description = _rouge_description("longest-common-subsequence")


OVERLAP_METRICS = (TokenF1Metric, BleuMetric, ChrfMetric, Rouge1Metric, Rouge2Metric, RougeLMetric)
