"""The judge's own run-to-run noise: one answer judged several times, its verdicts compared.

``kb evaluate --judge-repeats N`` judges each answer ``N`` times (the judge cache off, so each is a new call).
The stored result holds each metric's mean over those calls; ``noise`` says, per metric, how much the calls
disagreed about the same answer: the mean standard deviation of an answer's values (with a 95 % interval
over answers) and the share of answers whose pass/fail verdicts were not unanimous (Wilson interval).
``--repeats`` answers each question again as well, so the intervals over questions then carry both the
generator's and the judge's variation; the noise here is the judge's alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from llmdock.evaluate.case import CaseResult, Score
from llmdock.evaluate.stats import Estimate, mean_ci, wilson


def merged(judged: Sequence[CaseResult], thresholds: dict[str, float]) -> CaseResult:
    """One result from several judgements of the same answer: each metric's mean over them."""
    first = judged[0]
    if len(judged) == 1 or any(r.error for r in judged):
        return next((r for r in judged if r.error), first)
    scores = {}
    for label in first.scores:
        values = [r.scores[label].value for r in judged]
        mean = statistics.fmean(values)
        shown = ", ".join(f"{v:.2f}" for v in values)
        scores[label] = Score(mean, mean >= thresholds.get(label, 0.5), f"judged {len(values)}x: {shown}")
    weighted = sum(s.passed for s in scores.values()) / (len(scores) or 1)
    passed = all(s.passed for s in scores.values())
    return CaseResult(first.target, first.case_id, first.repeat, first.output, scores, weighted, passed)


@dataclass(frozen=True)
class Noise:
    sd: Estimate  # mean over answers of the standard deviation of one answer's judged values
    disagree: Estimate  # share of answers whose verdicts were not unanimous
    answers: int


def noise(judgements: Sequence[Sequence[CaseResult]]) -> dict[str, Noise]:
    """Per metric label, how much repeated judgements of the same answer differed (answers judged at least
    twice and without an error only)."""
    usable = [js for js in judgements if len(js) > 1 and not any(r.error for r in js)]
    labels = list(dict.fromkeys(label for js in usable for label in js[0].scores))
    found = {}
    for label in labels:
        per_answer = [[r.scores[label] for r in js] for js in usable if all(label in r.scores for r in js)]
        sds = [statistics.pstdev(s.value for s in scores) for scores in per_answer]
        split = sum(len({s.passed for s in scores}) > 1 for scores in per_answer)
        found[label] = Noise(mean_ci(sds), wilson(split, len(per_answer)), len(per_answer))
    return found
