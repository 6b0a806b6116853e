"""The deployment gate: absolute bounds on a run's metrics, and no significant regression against a baseline.

``gate`` turns a summary (or raw results) and, optionally, a comparison into a verdict with one human
sentence per condition; ``junit_xml`` writes the same conditions as a JUnit report for any CI. A drop that
is not significant at ``alpha`` passes, with a note that it is within noise: the gate fails on evidence,
not on the noise of a small suite.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmdock.evaluate.case import CaseResult
from llmdock.evaluate.compare import MCNEMAR, Comparison, PairedTest
from llmdock.evaluate.stats import PASS_RATE, TargetSummary, lower_is_better, summarize


@dataclass(frozen=True, slots=True)
class Bound:
    """An absolute bound on a metric: a minimum, or a maximum for a metric where lower is better.

    ``higher_is_better`` None: decided by the label (``latency…``, ``tokens``, ``cost``… are maxima).
    """

    value: float
    higher_is_better: bool | None = None

    def direction(self, label: str) -> bool:
        return self.higher_is_better if self.higher_is_better is not None else not lower_is_better(label)


@dataclass(frozen=True, slots=True)
class GateCondition:
    name: str  # e.g. ``smollm2: rouge-l >= 0.4`` or ``smollm2: rouge-l vs baseline``
    ok: bool
    reason: str  # one sentence: the metric, the values and, against a baseline, the test and its p-value


@dataclass(frozen=True, slots=True)
class GateResult:
    conditions: list[GateCondition]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.conditions)

    @property
    def failures(self) -> list[GateCondition]:
        return [c for c in self.conditions if not c.ok]

    @property
    def reasons(self) -> list[str]:
        """One sentence per condition, failures first, then what passed."""
        return [c.reason for c in self.failures] + [c.reason for c in self.conditions if c.ok]


def gate(
    summary_or_results: Sequence[TargetSummary] | Sequence[CaseResult],
    checks_bounds: Mapping[str, float | Bound],
    comparison: Comparison | None = None,
    *,
    alpha: float | None = None,
) -> GateResult:
    """Pass when every target meets every bound and, given a comparison against a baseline, no metric
    regresses significantly at ``alpha`` (default: the comparison's own).

    ``checks_bounds``: label -> bound; a plain number is a minimum, or a maximum for cost-type labels
    (``latency p95``, ``tokens``, ``cost``, ``error rate``…); a ``Bound`` sets the direction explicitly. The
    direction also decides which way a change against the baseline is a regression.
    """
    summaries = _summaries(summary_or_results)
    bounds = {label: b if isinstance(b, Bound) else Bound(float(b)) for label, b in checks_bounds.items()}
    prefix = len(summaries) > 1 or (comparison is not None and len(comparison.targets) > 1)
    conditions = [
        _bound_condition(s, label, bound, prefix) for s in summaries for label, bound in bounds.items()
    ]
    if bounds and not summaries:
        conditions.append(GateCondition("results", False, "the run has no results to hold to the bounds"))
    if comparison is not None:
        conditions += _comparison_conditions(comparison, bounds, alpha, prefix)
    return GateResult(conditions)


def _comparison_conditions(
    comparison: Comparison, bounds: Mapping[str, Bound], alpha: float | None, prefix: bool
) -> list[GateCondition]:
    level = comparison.alpha if alpha is None else alpha
    conditions = []
    for target in comparison.targets:
        at = f"{target.name}: " if prefix else ""
        if not target.tests:
            reason = f"{at}no case could be paired with the baseline: nothing shows it did not regress"
            conditions.append(GateCondition(f"{at}baseline", False, reason))
        for test in target.tests.values():
            higher = bounds[test.label].direction(test.label) if test.label in bounds else None
            conditions.append(_regression_condition(test, level, higher, prefix))
        if target.unpaired:
            reason = (
                f"{at}{len(target.unpaired)} case(s) could not be paired with the baseline (missing or "
                "errored on one side) and are not in the comparison"
            )
            conditions.append(GateCondition(f"{at}unpaired cases", True, reason))
    for side, targets in (("baseline", comparison.targets_only_a), ("run", comparison.targets_only_b)):
        for name in targets:
            reason = f"target {name} is only in the {side}: not compared"
            conditions.append(GateCondition(f"{name}: not compared", True, reason))
    return conditions


def _summaries(given: Sequence[TargetSummary] | Sequence[CaseResult]) -> list[TargetSummary]:
    if given and isinstance(given[0], CaseResult):
        return summarize([r for r in given if isinstance(r, CaseResult)])
    return [s for s in given if isinstance(s, TargetSummary)]


def _bound_condition(summary: TargetSummary, label: str, bound: Bound, prefix: bool) -> GateCondition:
    at = f"{summary.target}: " if prefix else ""
    higher = bound.direction(label)
    name = f"{at}{label} {'>=' if higher else '<='} {fmt(bound.value)}"
    values = summary.values()
    if label not in values or math.isnan(values[label]):
        known = ", ".join(sorted(values))
        return GateCondition(name, False, f"{at}{label} has no value in this run (known: {known})")
    value = values[label]
    ok = value >= bound.value if higher else value <= bound.value
    shown = _value(label, value)
    est = summary.estimate(label)
    ci = f" (95% CI {_value(label, est.low)}-{_value(label, est.high)}, n={est.n})" if est else ""
    if ok:
        word = "meets the minimum" if higher else "is within the maximum"
    else:
        word = "is below the minimum" if higher else "is above the maximum"
    return GateCondition(name, ok, f"{at}{label} {shown}{ci} {word} {_value(label, bound.value)}")


def _regression_condition(
    test: PairedTest, alpha: float, higher_is_better: bool | None, prefix: bool
) -> GateCondition:
    at = f"{test.target}: " if prefix else ""
    higher = higher_is_better if higher_is_better is not None else not lower_is_better(test.label)
    delta = test.mean_b - test.mean_a
    worse = delta < 0 if higher else delta > 0
    significant = test.p_value < alpha
    evidence = f"{test.test} {fmt_p(test.p_value)}, {test.n_pairs} pairs"
    if test.test == MCNEMAR and test.discordant:
        evidence += f": {test.discordant[0]} passed only in A, {test.discordant[1]} only in B"
    a, b = _value(test.label, test.mean_a), _value(test.label, test.mean_b)
    if round(delta, 12) == 0:
        sentence = f"{at}{test.label} unchanged at {b} ({evidence})"
    else:
        verb = "fell" if delta < 0 else "rose"
        sentence = f"{at}{test.label} {verb} from {a} to {b}"
        if worse and not significant:
            sentence += ", within noise"
        sentence += f" ({evidence})"
    return GateCondition(f"{at}{test.label} vs baseline", not (worse and significant), sentence)


def fmt(value: float) -> str:
    """A metric value for a sentence: three significant digits, whole numbers from 1000 up."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def fmt_p(p: float) -> str:
    """``p=0.003``, ``p=0.21``, or ``p<0.001`` below that."""
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _value(label: str, value: float) -> str:
    if label == PASS_RATE:
        return f"{value:.0%}"
    if label.startswith("latency"):
        return f"{fmt(value)} ms"
    return fmt(value)


def junit_xml(gate_result: GateResult, suite_name: str) -> str:
    """The gate as a JUnit XML report: one testcase per condition, a ``failure`` (with the reason) for each
    failed one, the reason as ``system-out`` for the rest."""
    failures = len(gate_result.failures)
    root = ET.Element("testsuites", name=suite_name)
    suite = ET.SubElement(
        root,
        "testsuite",
        name=suite_name,
        tests=str(len(gate_result.conditions)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    for condition in gate_result.conditions:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=condition.name)
        if condition.ok:
            ET.SubElement(case, "system-out").text = condition.reason
        else:
            failure = ET.SubElement(case, "failure", message=condition.reason, type="gate")
            failure.text = condition.reason
    root.set("tests", str(len(gate_result.conditions)))
    root.set("failures", str(failures))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
