"""Comparing two variants while the experiment runs, without peeking inflating false positives.

The decision uses a **mixture sequential probability ratio test** (mSPRT, Johari, Pekelis & Walsh 2017,
"Always valid inference"): with the difference's estimate d and its variance V, a normal mixing prior of
variance tau^2 on the true difference gives the likelihood ratio

    LR = sqrt(V / (V + tau^2)) * exp(tau^2 d² / (2 V (V + tau^2)))

which is a martingale under "no difference", so by Ville's inequality P(LR ever >= 1/alpha) <= alpha: ``status`` may
be read after every request and the chance of ever calling a difference that is not there stays <= alpha. The
always-valid p-value is min(1, 1/LR); the confidence sequence (valid at every look) is
d ± sqrt(V (V + tau^2) / tau^2 * (2 ln(1/alpha) + ln((V + tau^2) / V))). tau is set to a "small" effect, 0.2 of the
pooled standard deviation (Cohen's d = 0.2).

Beside it, the fixed-horizon test a single look would use is reported for reference — the two-proportion
z-test for rates, Welch's t-test for scores (scipy) — and how many more samples per variant a decision needs
at the difference seen (or at d = 0.2 when there is none yet): the larger of what a fixed-horizon test at
80 % power needs and where the sequential test would cross.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
POWER = 0.8
SMALL_EFFECT = 0.2  # Cohen's d: the mixing prior's scale, and the effect to plan for when none is seen
SEQUENTIAL_TEST = "mSPRT (always-valid p, normal mixture, tau = 0.2 sd)"


@dataclass(frozen=True, slots=True)
class Difference:
    """B - A for one measure, at this look."""

    measure: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    delta: float
    low: float  # the always-valid 95 % confidence sequence at this look
    high: float
    p_sequential: float  # always-valid p-value (mSPRT): what ``significant`` is decided on
    test: str  # the fixed-horizon test reported beside it
    p_fixed: float
    significant: bool
    samples_needed: int  # more per variant before a decision at the difference seen (0: significant already)


def _msprt(delta: float, v: float, tau2: float, alpha: float) -> tuple[float, float]:
    """(always-valid p-value, half-width of the confidence sequence)."""
    if v <= 0 or tau2 <= 0:
        return 1.0, math.inf
    log_lr = 0.5 * math.log(v / (v + tau2)) + tau2 * delta * delta / (2 * v * (v + tau2))
    p = 1.0 if log_lr <= 0 else min(1.0, math.exp(-log_lr))
    half = math.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((v + tau2) / v)))
    return p, half


def _needed(var_a: float, var_b: float, delta: float, sd: float, alpha: float, have: int) -> int:
    """More samples per variant a decision needs at the difference seen (else at a small effect): the larger of
    a fixed-horizon test at 80 % power and the point where the sequential test would cross at that effect."""
    effect = abs(delta) if abs(delta) > 1e-12 else SMALL_EFFECT * sd
    if effect <= 0 or not math.isfinite(effect) or var_a + var_b <= 0:
        return 0
    z = float(sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(POWER))
    fixed = math.ceil(z * z * (var_a + var_b) / (effect * effect))
    tau2 = (SMALL_EFFECT * sd) ** 2

    def crosses(n: int) -> bool:
        return _msprt(effect, (var_a + var_b) / n, tau2, alpha)[0] < alpha

    low, high = max(have, 1), max(have, 1)
    while not crosses(high) and high < 10**8:
        low, high = high, high * 2
    while low < high:  # the smallest n that crosses, between the last look that does not and one that does
        mid = (low + high) // 2
        low, high = (mid + 1, high) if not crosses(mid) else (low, mid)
    return max(0, max(fixed, high) - have)


def compare_rates(
    measure: str, hits_a: int, n_a: int, hits_b: int, n_b: int, alpha: float = ALPHA
) -> Difference | None:
    """Two proportions: B's rate minus A's (None with an empty side)."""
    if not n_a or not n_b:
        return None
    pa, pb = hits_a / n_a, hits_b / n_b
    delta = pb - pa
    pooled = (hits_a + hits_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    p_fixed = 1.0 if se_pooled == 0 else float(2 * sps.norm.sf(abs(delta) / se_pooled))
    v = pa * (1 - pa) / n_a + pb * (1 - pb) / n_b
    if v == 0:  # both sides constant: fall back on the pooled variance, else nothing can be said
        v = se_pooled * se_pooled
    sd = math.sqrt(pooled * (1 - pooled))
    p_seq, half = _msprt(delta, v, (SMALL_EFFECT * sd) ** 2, alpha)
    needed = _needed(pooled * (1 - pooled), pooled * (1 - pooled), delta, sd, alpha, min(n_a, n_b))
    return Difference(
        measure, n_a, n_b, pa, pb, delta, delta - half, delta + half, p_seq,
        "two-proportion z", p_fixed, p_seq < alpha, 0 if p_seq < alpha else needed,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Moments:
    """A sample as the comparison of means needs it: its size, mean and variance (``ddof=1``)."""

    n: int = 0
    mean: float = math.nan
    var: float = math.nan

    @classmethod
    def of(cls, values: Sequence[float]) -> Moments:
        x = np.asarray(values, dtype=float)
        if x.size == 0:
            return cls()
        return cls(int(x.size), float(x.mean()), float(x.var(ddof=1)) if x.size > 1 else math.nan)

    @classmethod
    def of_sums(cls, n: int, total: float, squares: float, constant: bool) -> Moments:
        """From the count, sum and sum of squares a database adds up (``constant``: every value the same,
        the variance then exactly 0, as ``of`` gives it)."""
        if n == 0:
            return cls()
        mean = total / n
        if n == 1:
            return cls(1, mean, math.nan)
        return cls(n, mean, 0.0 if constant else max(0.0, (squares - total * mean) / (n - 1)))


def compare_means(
    measure: str, a: Sequence[float], b: Sequence[float], alpha: float = ALPHA
) -> Difference | None:
    """Two samples of a score: B's mean minus A's (None with fewer than two values on a side)."""
    return compare_moments(measure, Moments.of(a), Moments.of(b), alpha)


def compare_moments(measure: str, a: Moments, b: Moments, alpha: float = ALPHA) -> Difference | None:
    """``compare_means`` from the two samples' moments (None with fewer than two values on a side)."""
    if a.n < 2 or b.n < 2:
        return None
    delta = b.mean - a.mean
    v = a.var / a.n + b.var / b.n
    constant = 1.0 if delta == 0 else 0.0
    p_fixed = constant if v == 0 else _welch(a, b)
    sd = math.sqrt((a.var + b.var) / 2)
    p_seq, half = _msprt(delta, v, (SMALL_EFFECT * sd) ** 2, alpha)
    needed = _needed(a.var, b.var, delta, sd, alpha, min(a.n, b.n))
    return Difference(
        measure, a.n, b.n, a.mean, b.mean, delta,
        delta - half, delta + half, p_seq, "Welch's t", p_fixed, p_seq < alpha, 0 if p_seq < alpha else needed,
    )  # fmt: skip


def _welch(a: Moments, b: Moments) -> float:
    """Welch's t-test's p-value, B against A (``scipy.stats.ttest_ind(b, a, equal_var=False)``)."""
    found = sps.ttest_ind_from_stats(
        b.mean, math.sqrt(b.var), b.n, a.mean, math.sqrt(a.var), a.n, equal_var=False
    )
    return float(found.pvalue)
