"""The evaluation statistics, as worked examples: intervals, paired comparisons, the gate and its JUnit report.

Every random draw has a fixed seed, and the bootstrap's own seed is fixed in the module: each test gives the
same numbers on every run.
"""

from __future__ import annotations

import math
import random
import warnings
import xml.etree.ElementTree as ET
from math import comb

import pytest

from llmdock.evaluate.case import CaseResult, Output, Score
from llmdock.evaluate.compare import MCNEMAR, WILCOXON, compare, mcnemar, wilcoxon
from llmdock.evaluate.gate import Bound, gate, junit_xml
from llmdock.evaluate.stats import PASS_RATE, SCORE, mean_ci, percentile, share_or_mean, summarize, wilson

pytestmark = pytest.mark.filterwarnings("error")  # no warning may leak out of the statistics


def result(
    case_id: str,
    value: float,
    *,
    passed: bool | None = None,
    target: str = "smollm2",
    repeat: int = 0,
    label: str = "rouge-l",
    latency_ms: float = 100.0,
    error: str = "",
) -> CaseResult:
    """One case's result with a single check ``label`` scoring ``value`` (passing at 0.5 unless told)."""
    ok = value >= 0.5 if passed is None else passed
    return CaseResult(
        target=target,
        case_id=case_id,
        repeat=repeat,
        output=Output(text="…", latency_ms=latency_ms, prompt_tokens=20, completion_tokens=10, cost=0.001),
        scores={} if error else {label: Score(value, ok)},
        score=1.0 if ok else 0.0,
        passed=ok and not error,
        error=error,
    )


def run(values: list[float], target: str = "smollm2") -> list[CaseResult]:
    return [result(f"c{i}", v, target=target) for i, v in enumerate(values)]


# -- intervals -------------------------------------------------------------------------------------


def test_wilson_interval_for_8_of_10_is_the_textbook_one() -> None:
    est = wilson(8, 10)
    # By hand: z = 1.96, centre (p + z²/2n) / (1 + z²/n), half-width z·√(p(1-p)/n + z²/4n²) / (1 + z²/n).
    z, n, p = 1.959963984540054, 10, 0.8
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert est.mean == 0.8
    assert est.method == "wilson"
    assert est.low == pytest.approx(centre - half) == pytest.approx(0.4902, abs=1e-4)
    assert est.high == pytest.approx(centre + half) == pytest.approx(0.9433, abs=1e-4)


def test_bootstrap_interval_contains_the_mean_and_is_reproducible() -> None:
    rng = random.Random(7)
    values = [rng.gauss(0.6, 0.1) for _ in range(40)]
    est = mean_ci(values)
    assert est.method == "bca"
    assert est.n == 40
    assert est.low < est.mean < est.high
    assert est.mean == pytest.approx(sum(values) / 40)
    assert est.low > 0.5
    assert est.high < 0.7
    assert mean_ci(values) == est  # the same data, the same interval


def test_too_little_or_constant_data_gives_a_quiet_fallback_interval() -> None:
    assert mean_ci([]).method == "none"
    assert math.isnan(mean_ci([]).mean)
    single = mean_ci([0.7])
    assert (single.low, single.mean, single.high, single.method) == (0.7, 0.7, 0.7, "single")
    constant = mean_ci([1.0, 1.0, 1.0, 1.0])
    assert (constant.low, constant.high, constant.method) == (1.0, 1.0, "constant")
    two = mean_ci([0.4, 0.6])
    assert two.method == "t"
    assert two.low < 0.5 < two.high


def test_percentiles_are_numpys_linear_ones() -> None:
    np = pytest.importorskip("numpy")
    rng = random.Random(3)
    for n in (2, 3, 7, 200):
        values = [rng.expovariate(1 / 200) for _ in range(n)]
        for q in (1, 25, 50, 95, 99):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12)
    assert percentile([42.0], 95) == 42.0
    assert math.isnan(percentile([], 50))


def test_a_pass_fail_check_gets_a_proportions_interval_other_scores_a_bootstrap() -> None:
    assert share_or_mean([1.0, 0.0, 1.0, 1.0, 1.0]) == wilson(4, 5)
    assert share_or_mean([1.0, 1.0, 1.0]) == wilson(3, 3)  # all passing: not a collapsed [1, 1]
    assert share_or_mean([0.5, 1.0, 0.0, 0.25]).method == "bca"
    (summary,) = summarize([result("a", 1.0, label="icontains"), result("b", 0.0, label="icontains")])
    assert summary.metrics["icontains"] == summary.pass_rate == summary.score == wilson(1, 2)


# -- the summary -----------------------------------------------------------------------------------


def test_summary_counts_errors_but_keeps_them_out_of_the_means() -> None:
    results = [*run([0.9, 0.8, 0.2, 0.7]), result("c4", 0.0, error="backend timed out")]
    results[1].output.latency_ms = 300.0
    (summary,) = summarize(results)
    assert (summary.n_cases, summary.n_results, summary.errored) == (5, 5, 1)
    assert summary.pass_rate.mean == 0.75
    assert summary.pass_rate.n == 4
    assert summary.pass_rate.method == "wilson"
    assert summary.metrics["rouge-l"].mean == pytest.approx(0.65)
    assert summary.latency_p50_ms == 100.0
    assert summary.latency_p95_ms == pytest.approx(270.0)
    assert summary.mean_prompt_tokens == 20
    assert summary.mean_completion_tokens == 10
    assert summary.total_cost == pytest.approx(0.005)  # the failed call counts: it may be billed
    assert summary.values()["error rate"] == pytest.approx(0.2)
    assert summary.flakiness is None  # no repeats, nothing to disagree


def test_flakiness_is_the_share_of_cases_whose_repeats_disagree() -> None:
    verdicts = {"stable-pass": [1, 1, 1], "stable-fail": [0, 0, 0], "flaky": [1, 0, 1], "ok": [1, 1, 1]}
    results = [result(case, float(v), repeat=i) for case, vs in verdicts.items() for i, v in enumerate(vs)]
    (summary,) = summarize(results)
    assert summary.repeats == 3
    assert summary.n_cases == 4
    assert summary.n_results == 12
    assert summary.flakiness == 0.25
    assert summary.case_flakiness == {"flaky": pytest.approx(1 / 3)}
    # With repeats the pass rate is estimated over cases (each case's share of passing repeats).
    assert summary.pass_rate.mean == pytest.approx((1 + 0 + 2 / 3 + 1) / 4)
    assert summary.pass_rate.n == 4


def test_repeats_that_all_agree_still_give_an_honest_interval_over_cases() -> None:
    results = [result(case, 1.0, repeat=i) for case in ("a", "b", "c") for i in range(2)]
    (summary,) = summarize(results)
    assert summary.pass_rate.mean == 1.0
    assert summary.pass_rate.method == "wilson"  # 3 of 3 cases: not a collapsed bootstrap [1, 1]
    assert summary.pass_rate.low == pytest.approx(wilson(3, 3).low)
    assert summary.pass_rate.low < 0.5


# -- comparing two runs ----------------------------------------------------------------------------


def test_a_clearly_worse_run_is_a_significant_regression_listed_first() -> None:
    rng = random.Random(1)
    baseline = [rng.uniform(0.55, 0.95) for _ in range(30)]
    candidate = [v - 0.15 + rng.gauss(0, 0.03) for v in baseline]
    candidate[5] = baseline[5] - 0.5  # the worst drop
    comparison = compare(run(baseline, "v1"), run(candidate, "v2"))

    rouge = comparison.targets[0].tests["rouge-l"]
    assert rouge.test == WILCOXON
    assert rouge.n_pairs == 30
    assert rouge.target == "v1 → v2"  # one target each: paired across the two names
    assert rouge.significant
    assert rouge.p_value < 0.001
    assert rouge.delta.mean == pytest.approx(rouge.mean_b - rouge.mean_a)
    assert rouge.delta.high < 0  # the whole paired-bootstrap interval is below zero
    assert rouge.rank_biserial is not None
    assert rouge.rank_biserial < -0.9

    changed = comparison.changed_cases
    assert changed[0].regression
    assert all(c.regression for c in changed)
    assert changed[0].case_id == "c5"  # flipped to fail with the largest drop


def test_equal_runs_plus_noise_are_not_significant() -> None:
    rng = random.Random(1)
    baseline = [rng.uniform(0.3, 0.9) for _ in range(40)]
    candidate = [v + rng.gauss(0, 0.05) for v in baseline]
    comparison = compare(run(baseline), run(candidate))
    rouge = next(t for t in comparison.tests if t.label == "rouge-l")
    assert not rouge.significant
    assert rouge.p_value > 0.05
    assert rouge.delta.low < 0 < rouge.delta.high


def test_pure_noise_is_significant_about_alpha_of_the_time() -> None:
    rng = random.Random(11)
    p_values = [wilcoxon([rng.gauss(0, 0.05) for _ in range(30)])[0] for _ in range(400)]
    false_alarms = sum(p < 0.05 for p in p_values) / len(p_values)
    assert 0.01 < false_alarms < 0.09


def test_identical_runs_give_p_1_and_no_changed_cases() -> None:
    values = [0.2, 0.6, 0.9, 0.4]
    comparison = compare(run(values), run(values))
    assert all(t.p_value == 1.0 and not t.significant for t in comparison.tests)
    assert comparison.changed_cases == []
    assert wilcoxon([0.0, 0.0, 0.0]) == (1.0, 0.0)


def test_mcnemar_on_a_known_table_is_the_exact_binomial() -> None:
    # 30 cases: 7 pass only in A, 1 passes only in B, 15 pass in both, 7 fail in both.
    a_pass = [True] * 7 + [False] * 1 + [True] * 15 + [False] * 7
    b_pass = [False] * 7 + [True] * 1 + [True] * 15 + [False] * 7
    a = [result(f"c{i}", 1.0 if p else 0.0) for i, p in enumerate(a_pass)]
    b = [result(f"c{i}", 1.0 if p else 0.0) for i, p in enumerate(b_pass)]
    test = compare(a, b).targets[0].tests[PASS_RATE]
    # Two-sided exact: 2 · P(X <= 1) for X ~ Binomial(8, ½) = 2 · (1 + 8) / 256.
    by_hand = 2 * (comb(8, 0) + comb(8, 1)) / 2**8
    assert test.test == MCNEMAR
    assert test.discordant == (7, 1)
    assert test.p_value == pytest.approx(by_hand) == pytest.approx(0.0703125)
    assert not test.significant
    assert mcnemar(0, 0) == 1.0
    assert (test.mean_a, test.mean_b) == (pytest.approx(22 / 30), pytest.approx(16 / 30))


def test_cases_in_one_run_only_are_listed_not_dropped() -> None:
    a = [*run([0.9, 0.8, 0.7]), result("gone", 0.9)]
    b = [*run([0.9, 0.8, 0.7]), result("new", 0.5), result("c2", 0.7, repeat=1)]
    b[2] = result("c2", 0.0, error="timeout")  # c2's first repeat errored, the second answered
    a.append(result("broken", 0.6))
    b.append(result("broken", 0.0, error="timeout"))
    comparison = compare(a, b)
    unpaired = {(u.case_id, u.reason) for u in comparison.unpaired}
    assert unpaired == {("gone", "only in A"), ("new", "only in B"), ("broken", "errored in B")}
    assert comparison.targets[0].tests[SCORE].n_pairs == 3  # c0, c1 and c2 (its answered repeat)


# -- the gate --------------------------------------------------------------------------------------


def test_gate_fails_on_an_absolute_bound_and_bounds_latency_from_above() -> None:
    results = run([0.9, 0.3, 0.35, 0.4])
    verdict = gate(results, {"rouge-l": 0.5, "latency p95": 150.0, PASS_RATE: Bound(0.2)})
    assert not verdict.ok
    assert [c.name for c in verdict.failures] == ["rouge-l >= 0.5"]
    assert verdict.reasons[0].startswith("rouge-l 0.487 (95% CI ")
    assert verdict.reasons[0].endswith("is below the minimum 0.5")
    assert "latency p95 100 ms" in verdict.reasons[1]
    assert "within the maximum 150 ms" in verdict.reasons[1]
    assert "pass rate 25%" in verdict.reasons[2]
    unknown = gate(results, {"rouge-1": 0.5})
    assert not unknown.ok
    assert "rouge-1 has no value" in unknown.reasons[0]


def test_gate_fails_on_a_significant_regression_against_the_baseline() -> None:
    rng = random.Random(3)
    baseline = [rng.uniform(0.3, 0.5) for _ in range(40)]
    candidate = [v - 0.08 + rng.gauss(0, 0.02) for v in baseline]
    a, b = run(baseline), run(candidate)
    verdict = gate(b, {"rouge-l": 0.1}, compare(a, b))
    assert not verdict.ok
    failed = {c.name: c.reason for c in verdict.failures}
    assert set(failed) == {"rouge-l vs baseline"}
    assert failed["rouge-l vs baseline"].startswith("rouge-l fell from 0.4")
    assert failed["rouge-l vs baseline"].endswith("(Wilcoxon p<0.001, 40 pairs)")
    assert any(r.startswith("rouge-l 0.3") and "meets the minimum 0.1" in r for r in verdict.reasons)


def test_gate_passes_a_drop_that_is_within_noise() -> None:
    rng = random.Random(4)
    baseline = [rng.uniform(0.3, 0.9) for _ in range(12)]
    candidate = [v - 0.03 + rng.gauss(0, 0.08) for v in baseline]  # a small drop, much noise, 12 cases
    comparison = compare(run(baseline), run(candidate))
    verdict = gate(run(candidate), {}, comparison, alpha=0.05)
    assert verdict.ok, verdict.reasons
    (rouge,) = [r for r in verdict.reasons if r.startswith("rouge-l")]
    assert rouge == "rouge-l fell from 0.544 to 0.52, within noise (Wilcoxon p=0.34, 12 pairs)"


def test_junit_report_has_one_testcase_per_condition_and_the_failures() -> None:
    rng = random.Random(3)
    baseline = [rng.uniform(0.3, 0.5) for _ in range(40)]
    candidate = [v - 0.08 for v in baseline]
    verdict = gate(
        run(candidate), {"rouge-l": 0.5, "latency p95": 500}, compare(run(baseline), run(candidate))
    )
    root = ET.fromstring(junit_xml(verdict, "qa-suite"))
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("name") == "qa-suite"
    assert len(cases) == len(verdict.conditions)
    failures = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert suite.get("failures") == str(len(failures)) == "2"
    assert set(failures) == {"rouge-l >= 0.5", "rouge-l vs baseline"}
    message = failures["rouge-l vs baseline"].get("message")  # type: ignore[union-attr]
    assert message is not None
    assert "(Wilcoxon p<0.001, 40 pairs)" in message


def test_no_warning_escapes_on_degenerate_data() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summarize(run([1.0, 1.0, 1.0]) + run([0.5], target="tiny"))
        compare(run([1.0, 1.0]), run([1.0, 0.0]))


def test_several_targets_pair_by_name_and_repeats_are_averaged_first() -> None:
    a = [result("c0", v, target=t, repeat=i) for t in ("big", "small") for i, v in enumerate([1.0, 0.0])]
    b = [result("c0", v, target=t, repeat=i) for t in ("big", "tiny") for i, v in enumerate([1.0, 1.0])]
    comparison = compare(a, b)
    (big,) = comparison.targets
    assert big.name == "big"
    assert (comparison.targets_only_a, comparison.targets_only_b) == (("small",), ("tiny",))
    # c0 passed 1 of 2 repeats in A and 2 of 2 in B: a share, so Wilcoxon rather than McNemar.
    test = big.tests[PASS_RATE]
    assert (test.test, test.mean_a, test.mean_b, test.n_pairs) == (WILCOXON, 0.5, 1.0, 1)
    (change,) = big.changed_cases
    assert not change.regression
    assert change.flipped is False  # 0.5 counts as passing: the majority verdict did not change


def test_a_gate_with_nothing_to_judge_fails() -> None:
    assert not gate([], {"rouge-l": 0.5}).ok
    everything_errored = [result("c0", 0.0, error="timeout"), result("c1", 0.0, error="timeout")]
    verdict = gate(everything_errored, {}, compare(run([0.9, 0.8]), everything_errored))
    assert not verdict.ok
    assert verdict.reasons[0] == "no case could be paired with the baseline: nothing shows it did not regress"


def test_the_wilson_interval_is_scipys_without_importing_it() -> None:
    from scipy import stats as sps

    for n in (1, 2, 3, 7, 10, 50, 200, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for confidence in (0.9, 0.95, 0.99):
                ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
                est = wilson(k, n, confidence)
                assert (est.low, est.high) == pytest.approx((ci.low, ci.high), abs=1e-12), (k, n, confidence)
