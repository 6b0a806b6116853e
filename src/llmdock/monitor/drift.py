"""Drift of one model's traffic between a reference window and the current one, from the stored traces.

Each statistic compares the two windows with a test from scipy, or a permutation test:

- input and output length (characters) and prompt / completion tokens: two-sample Kolmogorov-Smirnov;
- error rate, guard-block rate and refusal rate (the ``refusal`` guard detector on the answers): Fisher's exact
  test on the 2x2 counts;
- input and output meaning: the maximum mean discrepancy (MMD², RBF kernel, median-distance bandwidth) between the
  two windows' sentence embeddings (all-MiniLM-L6-v2 by default), its p-value from label permutations;
- input and output language mix (py3langid): chi-square test of homogeneity on the counts per language;
- input and output topics: the reference's embeddings clustered by k-means (drift_topics.py), the current
  window's texts assigned to the nearest reference topic, chi-square test on the counts per topic;
- each online-evaluation score: two-sample Kolmogorov-Smirnov.

Both windows are first reduced to a :class:`~llmdock.monitor.drift_summary.Summary`; the reference's can be
stored once (monitor/reference.py) and read back instead of recomputed.

The p-values are adjusted for the number of tests (Benjamini-Hochberg, ``scipy.stats.false_discovery_control``);
a statistic has drifted when its adjusted p-value is below ``alpha``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from llmdock.monitor.drift_summary import TEXTS, Embed, Summary, summarize
from llmdock.monitor.drift_window import Window, load_window

__all__ = ["DriftRow", "Embed", "Summary", "Window", "drift", "load_window", "mmd_test"]


@dataclass(frozen=True, slots=True)
class DriftRow:
    name: str
    test: str
    reference: str
    current: str
    statistic: float
    p_value: float
    adjusted_p: float = float("nan")
    drifted: bool = False
    samples: tuple[Sequence[float], Sequence[float]] = ((), ())  # for the report's plots
    mix: tuple[dict[str, int], dict[str, int]] = ({}, {})  # counts per category (topics), for the report


def ks_row(name: str, ref: Sequence[float], cur: Sequence[float]) -> DriftRow | None:
    if len(ref) < 2 or len(cur) < 2:
        return None
    result = stats.ks_2samp(ref, cur)
    return DriftRow(
        name,
        "Kolmogorov-Smirnov",
        f"median {np.median(ref):.4g}",
        f"median {np.median(cur):.4g}",
        float(result.statistic),
        float(result.pvalue),
        samples=(list(ref), list(cur)),
    )


def rate_row(name: str, ref_hits: int, ref_n: int, cur_hits: int, cur_n: int) -> DriftRow | None:
    if not ref_n or not cur_n:
        return None
    odds, p = stats.fisher_exact([[ref_hits, ref_n - ref_hits], [cur_hits, cur_n - cur_hits]])
    return DriftRow(
        name, "Fisher exact", f"{ref_hits / ref_n:.2%}", f"{cur_hits / cur_n:.2%}", float(odds), float(p)
    )


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int, seed: int = 0) -> tuple[float, float]:
    """(MMD², permutation p-value) between samples ``x`` and ``y`` (rows are vectors), RBF kernel whose width
    is the median pairwise distance."""
    z = np.vstack([x, y]).astype(np.float64)
    sq = np.maximum(np.sum(z * z, 1)[:, None] + np.sum(z * z, 1)[None, :] - 2 * z @ z.T, 0.0)
    median = float(np.median(sq[np.triu_indices_from(sq, k=1)])) or 1.0
    k = np.exp(-sq / median)
    n = len(x)

    def mmd2(idx: np.ndarray) -> float:
        a, b = idx[:n], idx[n:]
        return float(k[np.ix_(a, a)].mean() + k[np.ix_(b, b)].mean() - 2 * k[np.ix_(a, b)].mean())

    rng = np.random.default_rng(seed)
    observed = mmd2(np.arange(len(z)))
    exceed = sum(mmd2(rng.permutation(len(z))) >= observed for _ in range(permutations))
    return observed, (1 + exceed) / (1 + permutations)


def embedding_row(name: str, x: np.ndarray, y: np.ndarray, permutations: int) -> DriftRow:
    """MMD² between two windows' embeddings (rows), with each text's distance from the reference's mean for
    the plot."""
    mmd2, p = mmd_test(x, y, permutations)
    centre = x.mean(0)

    def distance(v: np.ndarray) -> list[float]:
        return [float(d) for d in np.linalg.norm(v - centre, axis=1)]

    return DriftRow(
        name,
        f"MMD², {permutations} permutations",
        f"n={len(x)}",
        f"n={len(y)}",
        mmd2,
        p,
        samples=(distance(x), distance(y)),
    )


def _mix(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{lang} {c / total:.0%}" for lang, c in top) if total else "-"


def language_row(name: str, ref: dict[str, int], cur: dict[str, int]) -> DriftRow | None:
    """Chi-square test of homogeneity on the counts per language (or topic; categories seen fewer than 5
    times in both windows together are pooled as ``other``)."""
    if sum(ref.values()) < 5 or sum(cur.values()) < 5:
        return None
    langs = sorted(set(ref) | set(cur))
    common = [lang for lang in langs if ref.get(lang, 0) + cur.get(lang, 0) >= 5]
    rare = [lang for lang in langs if lang not in common]
    table = [
        [side.get(lang, 0) for lang in common] + [sum(side.get(r, 0) for r in rare)] for side in (ref, cur)
    ]
    table = [row for row in np.array(table).T.tolist() if sum(row)]  # languages as rows, empty ones dropped
    if len(table) < 2:  # one language on both sides: nothing moved
        return DriftRow(name, "chi-square", _mix(ref), _mix(cur), 0.0, 1.0)
    result = stats.chi2_contingency(np.array(table).T)
    return DriftRow(name, "chi-square", _mix(ref), _mix(cur), float(result.statistic), float(result.pvalue))


def topic_row(name: str, ref: dict[str, int], cur: dict[str, int]) -> DriftRow | None:
    """The topic shares compared like languages, the counts kept for the report's table."""
    row = language_row(name, ref, cur)
    return None if row is None else dataclasses.replace(row, mix=(ref, cur))


async def drift(
    ref: Window | Summary,
    cur: Window | Summary,
    embed: Embed | None,
    *,
    permutations: int = 200,
    max_samples: int = 300,
    alpha: float = 0.05,
) -> list[DriftRow]:
    """Every statistic that both windows have enough data for, p-values adjusted, drift flagged. A window
    is summarised first (its texts embedded with ``embed``); a stored reference is already a summary."""
    if isinstance(ref, Window):
        ref = await summarize(ref, embed, max_samples)
    if isinstance(cur, Window):
        cur = await summarize(cur, embed if ref.embeddings else None, max_samples, topics=False)
    rows = [ks_row(name, values, cur.samples.get(name, [])) for name, values in ref.samples.items()]
    rows += [rate_row(name, *ref.rates[name], *cur.rates[name]) for name in ref.rates if name in cur.rates]
    rows += [
        language_row(f"{kind}: language", ref.languages.get(kind, {}), cur.languages.get(kind, {}))
        for kind in TEXTS
    ]
    rows += [
        ks_row(f"online eval: {name}", values, cur.scores[name])
        for name, values in ref.scores.items()
        if name in cur.scores
    ]
    for kind in TEXTS:
        x, y = ref.embeddings.get(kind), cur.embeddings.get(kind)
        if x is not None and y is not None and len(x) >= 5 and len(y) >= 5:
            rows.append(embedding_row(f"{kind}: meaning (embeddings)", x, y, permutations))
        topics = ref.topics.get(kind)
        if topics is not None and y is not None and len(y) >= 5 and y.shape[1] == topics.centroids.shape[1]:
            rows.append(
                topic_row(f"{kind}: topic", topics.shares(topics.counts), topics.shares(topics.assign(y)))
            )
    found = [r for r in rows if r is not None]
    if not found:
        return []
    adjusted = stats.false_discovery_control([min(max(r.p_value, 0.0), 1.0) for r in found])
    return [
        dataclasses.replace(r, adjusted_p=float(a), drifted=bool(a < alpha))
        for r, a in zip(found, adjusted, strict=True)
    ]
