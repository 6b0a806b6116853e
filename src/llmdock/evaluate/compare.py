"""Two runs side by side, case by case: per metric the means, the paired difference with its bootstrap CI,
a paired significance test and an effect size; and which cases changed, regressions first.

Pairing is by case id within a target (or across the two targets when each run has exactly one), each
case's repeats averaged first. Scores are tested with the Wilcoxon signed-rank test, pass/fail with the
exact McNemar test. Cases present (or answered) in one run only are listed as unpaired, never dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from llmdock.evaluate.case import CaseResult
from llmdock.evaluate.stats import (
    PASS_RATE,
    SCORE,
    Estimate,
    by_case,
    by_target,
    case_means,
    lower_is_better,
    mean_ci,
)

WILCOXON = "Wilcoxon"
MCNEMAR = "McNemar exact"
_DECIMALS = 12  # differences are rounded so that 0.1 - 0.1 computed two ways counts as no change


@dataclass(frozen=True, slots=True)
class PairedTest:
    """One metric compared over the paired cases of one target: B - A."""

    target: str  # the target, or "a → b" when two differently named targets were paired
    label: str  # a check label, ``pass rate`` or ``score``
    test: str  # ``Wilcoxon`` (signed-rank) or ``McNemar exact``
    n_pairs: int
    mean_a: float
    mean_b: float
    delta: Estimate  # the mean paired difference B - A with its paired bootstrap 95 % CI
    p_value: float  # two-sided; 1.0 when no pair differs
    significant: bool  # p_value < alpha
    rank_biserial: float | None = None  # Wilcoxon's effect size, -1..1 (> 0: B higher)
    discordant: tuple[int, int] | None = None  # McNemar: (pairs passing only in A, pairs passing only in B)

    @property
    def n_discordant(self) -> int:
        return sum(self.discordant) if self.discordant else 0


@dataclass(frozen=True, slots=True)
class CaseChange:
    """A case whose verdict or values moved between A and B (each side averaged over its repeats)."""

    target: str
    case_id: str
    passed_a: float  # share of repeats passing (1.0 / 0.0 without repeats)
    passed_b: float
    score_a: float
    score_b: float
    checks: dict[str, tuple[float, float]] = field(default_factory=dict)  # checks whose value moved: (A, B)
    key: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (pass, score, checks) change, higher is better

    @property
    def delta(self) -> float:
        return self.score_b - self.score_a

    @property
    def regression(self) -> bool:
        return self.key < (0.0, 0.0, 0.0)

    @property
    def flipped(self) -> bool:
        """The majority verdict changed (pass → fail or fail → pass)."""
        return (self.passed_a >= 0.5) != (self.passed_b >= 0.5)


@dataclass(frozen=True, slots=True)
class UnpairedCase:
    target: str
    case_id: str
    reason: str  # ``only in A``, ``only in B``, ``errored in A``, ``errored in B``, ``errored in both``


@dataclass(frozen=True, slots=True)
class TargetComparison:
    target_a: str
    target_b: str
    tests: dict[str, PairedTest]  # ``pass rate``, ``score``, then each check label
    changed_cases: list[CaseChange]  # regressions first (largest drop first), then improvements
    unpaired: list[UnpairedCase]

    @property
    def name(self) -> str:
        return self.target_a if self.target_a == self.target_b else f"{self.target_a} → {self.target_b}"


@dataclass(frozen=True, slots=True)
class Comparison:
    """Run B against run A (the baseline)."""

    alpha: float
    targets: list[TargetComparison]
    targets_only_a: tuple[str, ...] = ()  # targets with no counterpart in the other run
    targets_only_b: tuple[str, ...] = ()

    @property
    def tests(self) -> list[PairedTest]:
        return [test for target in self.targets for test in target.tests.values()]

    @property
    def changed_cases(self) -> list[CaseChange]:
        """Every target's changed cases: all regressions first (largest drop first), then improvements."""
        return _ordered([c for target in self.targets for c in target.changed_cases])

    @property
    def regressions(self) -> list[CaseChange]:
        return [c for c in self.changed_cases if c.regression]

    @property
    def unpaired(self) -> list[UnpairedCase]:
        return [u for target in self.targets for u in target.unpaired]


# -- the paired tests ------------------------------------------------------------------------------


def wilcoxon(differences: Sequence[float]) -> tuple[float, float]:
    """The Wilcoxon signed-rank test on paired differences: (two-sided p, matched-pairs rank-biserial r).

    Zero differences are split between the signs (``zsplit``); all zero gives p = 1 and r = 0. The
    rank-biserial correlation is (R+ - R-) / (R+ + R-) over the non-zero differences' ranks.
    """
    d = np.round(np.asarray(differences, dtype=float), _DECIMALS)
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return 1.0, 0.0
    ranks = sps.rankdata(np.abs(nonzero))
    r = float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(sps.wilcoxon(d, zero_method="zsplit").pvalue)
    return (p if math.isfinite(p) else 1.0), r


def mcnemar(only_a: int, only_b: int) -> float:
    """The exact McNemar test: two-sided binomial p of the discordant pairs (passing only in A vs only in B)
    under p = ½; 1.0 without discordant pairs."""
    n = only_a + only_b
    return float(sps.binomtest(only_a, n, 0.5).pvalue) if n else 1.0


def paired_test(target: str, label: str, a: Sequence[float], b: Sequence[float], alpha: float) -> PairedTest:
    """Compare the paired values ``a[i]``, ``b[i]`` of one metric: McNemar when every value is a 0/1 verdict
    (``pass rate`` without repeats, an exact-match check), Wilcoxon otherwise (scores, shares of repeats)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = np.round(y - x, _DECIMALS)
    binary = bool(np.isin(np.concatenate([x, y]), (0.0, 1.0)).all())
    rank_biserial: float | None = None
    discordant: tuple[int, int] | None = None
    if binary:
        discordant = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
        p = mcnemar(*discordant)
    else:
        p, rank_biserial = wilcoxon(diffs.tolist())
    return PairedTest(
        target=target,
        label=label,
        test=MCNEMAR if binary else WILCOXON,
        n_pairs=int(x.size),
        mean_a=float(x.mean()) if x.size else math.nan,
        mean_b=float(y.mean()) if y.size else math.nan,
        delta=mean_ci(diffs.tolist()),
        p_value=p,
        significant=p < alpha,
        rank_biserial=rank_biserial,
        discordant=discordant,
    )


# -- comparing runs --------------------------------------------------------------------------------


def compare(
    a: list[CaseResult],
    b: list[CaseResult],
    *,
    alpha: float = 0.05,
    lower_better: Collection[str] = (),
) -> Comparison:
    """Run ``b`` against the baseline ``a``.

    Targets pair by name, or the two runs' only targets with each other. ``lower_better``: labels where a
    rise is a regression, besides the cost-type ones ``lower_is_better`` knows (latency, tokens, cost…);
    it only orders the changed cases, the tests report B - A either way.
    """
    targets_a, targets_b = by_target(a), by_target(b)
    if len(targets_a) == 1 and len(targets_b) == 1:
        pairs = [(next(iter(targets_a)), next(iter(targets_b)))]
    else:
        pairs = [(t, t) for t in targets_a if t in targets_b]
    paired_a, paired_b = {p[0] for p in pairs}, {p[1] for p in pairs}
    return Comparison(
        alpha=alpha,
        targets=[
            _compare_target(ta, targets_a[ta], tb, targets_b[tb], alpha, lower_better) for ta, tb in pairs
        ],
        targets_only_a=tuple(t for t in targets_a if t not in paired_a),
        targets_only_b=tuple(t for t in targets_b if t not in paired_b),
    )


def _compare_target(
    target_a: str,
    rows_a: list[CaseResult],
    target_b: str,
    rows_b: list[CaseResult],
    alpha: float,
    lower_better: Collection[str],
) -> TargetComparison:
    name = target_a if target_a == target_b else f"{target_a} → {target_b}"
    means_a, means_b = case_means(rows_a), case_means(rows_b)
    paired = [case_id for case_id in means_a if case_id in means_b]
    labels = [PASS_RATE, SCORE]
    for means in (means_a, means_b):
        labels += [lab for m in means.values() for lab in m if lab not in labels]
    tests = {}
    for label in labels:
        both = [c for c in paired if label in means_a[c] and label in means_b[c]]
        if both:
            xs = [means_a[c][label] for c in both]
            ys = [means_b[c][label] for c in both]
            tests[label] = paired_test(name, label, xs, ys, alpha)
    changes = [_case_change(name, c, means_a[c], means_b[c], lower_better) for c in paired]
    return TargetComparison(
        target_a=target_a,
        target_b=target_b,
        tests=tests,
        changed_cases=_ordered([c for c in changes if c.key != (0.0, 0.0, 0.0)]),
        unpaired=_unpaired(name, by_case(rows_a), by_case(rows_b), means_a, means_b),
    )


def _case_change(
    target: str,
    case_id: str,
    a: dict[str, float],
    b: dict[str, float],
    lower_better: Collection[str],
) -> CaseChange:
    checks = {
        label: (a[label], b[label])
        for label in a
        if label not in (PASS_RATE, SCORE) and label in b and round(b[label] - a[label], _DECIMALS) != 0
    }
    signed = [
        (vb - va) * (-1 if label in lower_better or lower_is_better(label) else 1)
        for label, (va, vb) in checks.items()
    ]
    key = (
        round(b[PASS_RATE] - a[PASS_RATE], _DECIMALS),
        round(b[SCORE] - a[SCORE], _DECIMALS),
        round(sum(signed) / len(signed), _DECIMALS) if signed else 0.0,
    )
    return CaseChange(target, case_id, a[PASS_RATE], b[PASS_RATE], a[SCORE], b[SCORE], checks, key)


def _ordered(changes: list[CaseChange]) -> list[CaseChange]:
    regressions = sorted((c for c in changes if c.regression), key=lambda c: c.key)
    improvements = sorted((c for c in changes if not c.regression), key=lambda c: c.key, reverse=True)
    return regressions + improvements


def _unpaired(
    target: str,
    cases_a: dict[str, list[CaseResult]],
    cases_b: dict[str, list[CaseResult]],
    means_a: dict[str, dict[str, float]],
    means_b: dict[str, dict[str, float]],
) -> list[UnpairedCase]:
    found = []
    for case_id in dict.fromkeys([*cases_a, *cases_b]):
        if case_id in means_a and case_id in means_b:
            continue
        if case_id not in cases_b:
            reason = "only in A"
        elif case_id not in cases_a:
            reason = "only in B"
        elif case_id in means_a:
            reason = "errored in B"
        elif case_id in means_b:
            reason = "errored in A"
        else:
            reason = "errored in both"
        found.append(UnpairedCase(target, case_id, reason))
    return found
