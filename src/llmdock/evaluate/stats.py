"""What a run's results say, with their uncertainty: per target, each metric's mean with a 95 % CI, the
pass rate with its CI, latency, tokens, cost, and how flaky the verdicts are across repeats.

Pure functions over ``CaseResult`` lists (no I/O): ``llmdock eval run`` prints ``summarize``'s table, the
comparison and the gate build on the same estimators. Repeats of one case are not independent samples, so
with repeats a case's values are averaged first and the intervals are over cases.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING

from llmdock.evaluate.case import CaseResult

if TYPE_CHECKING:  # numpy (and scipy) load only when an interval needs a bootstrap or a t quantile
    import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240614  # fixed: the same results give the same intervals on every run
_BOOTSTRAP_CELLS = 2_000_000  # resample-array cells per batch, so a large run does not take gigabytes

PASS_RATE = "pass rate"  # the label of the overall verdict, beside the check labels
SCORE = "score"  # the label of the weighted share of checks passed
ERROR_RATE = "error rate"  # the share of results that errored

# Metrics where less is better (a bound on them is a maximum, a rise is a regression), by label prefix.
COST_PREFIXES = ("latency", "cost", "tokens", "perplexity", "error rate")


def lower_is_better(label: str) -> bool:
    """Whether ``label`` names a cost-type metric (latency, tokens, cost…), where a lower value is better."""
    return label.lower().startswith(COST_PREFIXES)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A mean with its 95 % interval over ``n`` units (cases, or results without repeats).

    ``method`` says how the interval was made: ``wilson``, ``bca``, ``percentile``, ``t`` (n = 2 or a
    bootstrap that could not be made), ``constant`` (every value equal) or ``single`` (n = 1);
    ``none`` when there was nothing to estimate (``mean`` is then NaN).
    """

    mean: float
    low: float
    high: float
    n: int
    method: str

    @property
    def empty(self) -> bool:
        return self.n == 0


@dataclass(frozen=True, slots=True)
class TargetSummary:
    """One target's results in a run."""

    target: str
    n_cases: int  # distinct cases
    n_results: int  # results: cases x repeats
    errored: int  # results with an error (left out of every mean and rate below, counted here)
    repeats: int  # the most repeats any case has
    pass_rate: Estimate
    score: Estimate  # the weighted share of checks passed
    metrics: dict[str, Estimate]  # each check's mean value, by check label
    latency_p50_ms: float
    latency_p95_ms: float
    mean_prompt_tokens: float
    mean_completion_tokens: float
    total_cost: float  # over every result, errored ones too (a failed call may still be billed)
    flakiness: float | None  # share of cases whose repeats disagree on pass/fail; None without repeats
    case_flakiness: dict[str, float] = field(default_factory=dict)  # flaky cases: share of minority verdicts

    def values(self) -> dict[str, float]:
        """Every number a gate can bound, by name: the check labels, ``pass rate``, ``score``, ``latency p50``,
        ``latency p95`` (ms), ``tokens`` (mean per result), ``cost`` (total) and ``error rate``."""
        found = {label: est.mean for label, est in self.metrics.items() if not est.empty}
        found[PASS_RATE] = self.pass_rate.mean
        found[SCORE] = self.score.mean
        found["latency p50"] = self.latency_p50_ms
        found["latency p95"] = self.latency_p95_ms
        found["tokens"] = self.mean_prompt_tokens + self.mean_completion_tokens
        found["cost"] = self.total_cost
        found[ERROR_RATE] = self.errored / self.n_results if self.n_results else math.nan
        return found

    def estimate(self, label: str) -> Estimate | None:
        """The interval behind ``values()[label]``, where there is one."""
        if label == PASS_RATE:
            return self.pass_rate
        if label == SCORE:
            return self.score
        return self.metrics.get(label)


# -- estimators ------------------------------------------------------------------------------------


def wilson(successes: int, n: int, confidence: float = CONFIDENCE) -> Estimate:
    """A proportion with its Wilson score interval (good at small n and near 0 or 1, unlike the normal one).

    Newcombe's (1998) closed form without continuity correction: what ``scipy.stats.binomtest(k, n)
    .proportion_ci(method="wilson")`` computes (a test holds the two equal), written out so that a summary
    whose intervals are all proportions or constants never imports ``scipy.stats`` (a second of start-up).
    """
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "none")
    p = successes / n
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    denom = 2 * (n + z * z)
    center = (2 * n * p + z * z) / denom
    delta = z / denom * math.sqrt(4 * n * p * (1 - p) + z * z)
    low = 0.0 if successes == 0 else center - delta
    high = 1.0 if successes == n else center + delta
    return Estimate(p, low, high, n, "wilson")


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE, seed: int = BOOTSTRAP_SEED) -> Estimate:
    """A mean with a bootstrap interval (BCa, else percentile), reproducible through ``seed``.

    Too little data for a bootstrap falls back quietly: one value or all values equal give a degenerate
    interval, two values (or a bootstrap that yields no finite bounds) a t-interval. No warning escapes.
    """
    listed = [float(v) for v in values]
    n = len(listed)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "none")
    if n == 1:
        return Estimate(listed[0], listed[0], listed[0], 1, "single")
    if all(v == listed[0] for v in listed):
        return Estimate(listed[0], listed[0], listed[0], n, "constant")
    import numpy as np

    x = np.asarray(listed, dtype=float)
    mean = float(x.mean())
    if n >= 3:
        for method in ("BCa", "percentile"):
            bounds = _bootstrap(x, method, confidence, seed)
            if bounds is not None:
                return Estimate(mean, min(bounds[0], mean), max(bounds[1], mean), n, method.lower())
    return _t_interval(x, confidence)


def _bootstrap(x: np.ndarray, method: str, confidence: float, seed: int) -> tuple[float, float] | None:
    import numpy as np
    from scipy import stats as sps  # imported when an interval needs it (a second), on the calling thread

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            result = sps.bootstrap(
                (x,),
                np.mean,
                n_resamples=BOOTSTRAP_RESAMPLES,
                batch=max(1, _BOOTSTRAP_CELLS // x.size),
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
            )
        except (ValueError, FloatingPointError):
            return None
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return low, high


def _t_interval(x: np.ndarray, confidence: float) -> Estimate:
    from scipy import stats as sps

    n = int(x.size)
    mean = float(x.mean())
    sem = float(x.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return Estimate(mean, mean - half, mean + half, n, "t")


def percentile(values: Sequence[float], q: int) -> float:
    """The ``q``-th percentile (a whole percent, 1..99), interpolated linearly between the closest ranks as
    ``numpy.percentile`` does by default (``statistics.quantiles``' inclusive method; a test holds the two
    equal); NaN for no values."""
    if len(values) < 2:
        return float(values[0]) if values else math.nan
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def share_or_mean(values: Iterable[float]) -> Estimate:
    """Per-case values that are all 0 or 1 (a pass/fail check, or the weighted score of one check) are a
    proportion: its Wilson interval, as the pass rate has (a bootstrap of 0/1 values would also collapse to
    [1, 1] when every case passes). Any other values: :func:`mean_ci`."""
    listed = list(values)
    if listed and all(v in (0.0, 1.0) for v in listed):
        return wilson(int(sum(listed)), len(listed))
    return mean_ci(listed)


# -- per-case views (repeats averaged) -------------------------------------------------------------


def by_target(results: Iterable[CaseResult]) -> dict[str, list[CaseResult]]:
    """Results grouped by target, in the order targets first appear."""
    grouped: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        grouped[result.target].append(result)
    return dict(grouped)


def by_case(results: Iterable[CaseResult]) -> dict[str, list[CaseResult]]:
    """Results grouped by case id (the repeats of one case together), in first-appearance order."""
    grouped: dict[str, list[CaseResult]] = defaultdict(list)
    for result in results:
        grouped[result.case_id].append(result)
    return dict(grouped)


def case_means(results: Iterable[CaseResult]) -> dict[str, dict[str, float]]:
    """Per case, the mean over its non-errored repeats of: each check's value, ``score``, and ``pass rate``
    (the share of repeats that passed). A case with every repeat errored is absent; a check a repeat did not
    score is averaged over the repeats that did."""
    means: dict[str, dict[str, float]] = {}
    for case_id, repeats in by_case(results).items():
        ok = [r for r in repeats if not r.error]
        if not ok:
            continue
        values: dict[str, list[float]] = defaultdict(list)
        for result in ok:
            values[PASS_RATE].append(1.0 if result.passed else 0.0)
            values[SCORE].append(result.score)
            for label, score in result.scores.items():
                values[label].append(score.value)
        means[case_id] = {label: sum(v) / len(v) for label, v in values.items()}
    return means


def flakiness(results: Iterable[CaseResult]) -> tuple[float | None, dict[str, float]]:
    """How often repeats disagree: the share of cases (with at least two non-errored repeats) whose repeats
    do not all give the same verdict, and for each such case the share of its repeats in the minority.
    ``None`` when no case was repeated."""
    repeated = 0
    flaky: dict[str, float] = {}
    for case_id, repeats in by_case(results).items():
        verdicts = [r.passed for r in repeats if not r.error]
        if len(verdicts) < 2:
            continue
        repeated += 1
        passes = sum(verdicts)
        if 0 < passes < len(verdicts):
            flaky[case_id] = min(passes, len(verdicts) - passes) / len(verdicts)
    return (len(flaky) / repeated if repeated else None), flaky


# -- the summary -----------------------------------------------------------------------------------


def summarize(results: list[CaseResult]) -> list[TargetSummary]:
    """One summary per target, in the order targets first appear in ``results``."""
    return [_summarize_target(target, rows) for target, rows in by_target(results).items()]


def _summarize_target(target: str, rows: list[CaseResult]) -> TargetSummary:
    ok = [r for r in rows if not r.error]
    cases = by_case(rows)
    repeats = max((len(v) for v in cases.values()), default=0)
    means = case_means(rows)
    labels = list(dict.fromkeys(label for r in ok for label in r.scores))
    shares = [m[PASS_RATE] for m in means.values()]
    if repeats > 1 and any(0 < v < 1 for v in shares):  # repeats disagree: over cases, from each case's mean
        pass_rate = mean_ci(shares)
    elif repeats > 1:  # every case's repeats agree: a proportion over cases (a bootstrap would collapse)
        pass_rate = wilson(int(sum(shares)), len(shares))
    else:
        pass_rate = wilson(sum(r.passed for r in ok), len(ok))
    latencies = [r.output.latency_ms for r in ok]
    rate, per_case = flakiness(rows)
    return TargetSummary(
        target=target,
        n_cases=len(cases),
        n_results=len(rows),
        errored=len(rows) - len(ok),
        repeats=repeats,
        pass_rate=pass_rate,
        score=share_or_mean(m[SCORE] for m in means.values()),
        metrics={label: share_or_mean(m[label] for m in means.values() if label in m) for label in labels},
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        mean_prompt_tokens=_mean(r.output.prompt_tokens for r in ok),
        mean_completion_tokens=_mean(r.output.completion_tokens for r in ok),
        total_cost=sum(r.output.cost for r in rows),
        flakiness=rate,
        case_flakiness=per_case,
    )


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return sum(v) / len(v) if v else math.nan
