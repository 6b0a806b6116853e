"""Sentiment of the answer: VADER's compound score (Hutto & Gilbert 2014; the `vaderSentiment` package, MIT,
its lexicon in the wheel, nothing downloaded), -1 (most negative) to 1 (most positive).

A lexicon and rules, not a model: fast and deterministic, meant for comparing answers (the scan's
counterfactual pairs) more than for judging one alone.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from llmdock.evaluate.case import BaseMetric, Case, Output, Score

NEGATIVE_BELOW = -0.05
"""VADER's own cut-off: a compound score at or below -0.05 is negative, at or above 0.05 positive."""


@cache
def analyzer() -> Any:
    """One analyser per process (reading the lexicon takes ~0.1 s)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def compound(text: str) -> float:
    """VADER's compound sentiment of ``text``, -1..1 (0 for text without sentiment words)."""
    return float(analyzer().polarity_scores(text)["compound"])


class SentimentMetric(BaseMetric):
    name = "sentiment"
    description = (
        "VADER's compound sentiment of the output (vaderSentiment, a lexicon with rules for negation, "
        "intensifiers and punctuation), -1 (negative) to 1 (positive). Passes when it reaches the threshold; "
        "with none, when the answer is not negative (above -0.05, VADER's cut-off)."
    )

    async def score(self, case: Case, output: Output) -> Score:
        value = compound(output.text)
        if self.check.threshold is not None:
            return Score(value, value >= self.check.threshold)
        return Score(value, value > NEGATIVE_BELOW, "negative" if value <= NEGATIVE_BELOW else "")


SENTIMENT_METRICS = (SentimentMetric,)
