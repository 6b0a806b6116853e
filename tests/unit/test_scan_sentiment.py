"""The scan's bias comparison by sentiment: VADER scores each counterfactual pair's answers, a Wilcoxon test
over an axis's pairs tells a tilt from noise, and a significant tilt is a finding that says which term's
answers are more negative, by how much, at what p."""

from __future__ import annotations

import pytest

from llmdock.evaluate import Case, CaseResult, Check, Output, Score
from llmdock.evaluate.metrics.sentiment import SentimentMetric
from llmdock.scan import probes
from llmdock.scan.sentiment import gap_findings, gaps, pair_scores

WARM = "They will do a wonderful job and everyone will be happy."
COLD = "They will do a terrible job and everyone will be miserable."
PLAIN = "They will start on Monday."


def answered(case: Case, text: str) -> CaseResult:
    return CaseResult("t", case.id, 0, Output(text=text), {"probe": Score(1.0, True)}, 1.0, True)


async def test_the_sentiment_metric_scores_tone_and_passes_what_is_not_negative() -> None:
    metric = SentimentMetric(Check("sentiment"), None)
    warm = await metric.score(Case(id="c"), Output(text=WARM))
    cold = await metric.score(Case(id="c"), Output(text=COLD))
    assert warm.value > 0.5
    assert warm.passed
    assert cold.value < -0.5
    assert not cold.passed
    strict = SentimentMetric(Check("sentiment", threshold=0.9), None)
    assert not (await strict.score(Case(id="c"), Output(text=WARM))).passed


async def test_answers_about_one_term_more_negative_on_every_pair_are_a_finding_with_its_test() -> None:
    cases = {c.id: c for c in probes(["bias"])}
    results = []
    for case in cases.values():
        meta = case.metadata
        if meta["axis"] == "gender":  # every situation: warm about the man, cold about the woman
            results.append(answered(case, WARM if meta["reference"] else COLD))
        elif meta["axis"] == "age":  # the same tone either way: no tilt
            results.append(answered(case, PLAIN))
        else:  # tilts both ways, pair by pair: noise, not a tilt
            situation = int(meta["group"].split(".")[1]) // 4  # groups run situation-major over 4 axes
            flip = situation % 2 == 0
            results.append(answered(case, WARM if meta["reference"] == flip else COLD))
    scored = await pair_scores(cases, results, None)
    by_axis = {g.axis: g for g in gaps(cases, scored)}
    gender = by_axis["gender"]
    assert (gender.term_a, gender.term_b, gender.pairs) == ("a man", "a woman", 8)
    assert gender.significant
    assert gender.delta.mean < -1.0
    assert gender.p_value == pytest.approx(2 / 2**8)  # exact two-sided Wilcoxon, 8 pairs all one way
    assert gender.sentence.startswith(
        f"answers about 'a woman' are more negative than about 'a man' by {-gender.delta.mean:.2f}"
    )
    assert "Wilcoxon signed-rank p=0.00781, 8 pairs" in gender.sentence
    assert not by_axis["age"].significant
    assert by_axis["age"].p_value == 1.0
    assert not by_axis["religion"].significant
    assert by_axis["religion"].sentence.startswith("no significant sentiment difference")

    findings = gap_findings(cases, scored, list(by_axis.values()), {"t": ["--model", "m"]})
    assert len(findings) == 1
    finding = findings[0]
    assert (finding.category, finding.failed, finding.probes) == ("bias", 8, 8)
    assert finding.summary == f"gender: {gender.sentence}"
    assert len(finding.examples) == 5
    assert all("about 'a woman' against" in e.why for e in finding.examples)
    assert all(e.reproduce.startswith("llmdock chat --model m") for e in finding.examples)


async def test_a_pair_with_an_errored_answer_is_left_out_of_the_test() -> None:
    cases = {c.id: c for c in probes(["bias"], limit=4)}
    results = [answered(c, PLAIN) for c in cases.values()]
    results[0] = CaseResult("t", results[0].case_id, 0, Output(error="blocked"), {}, 0.0, False, "blocked")
    scored = await pair_scores(cases, results, None)
    assert sorted(len(pairs) for pairs in scored.values()) == [1, 1, 1]  # the gender pair is gone
