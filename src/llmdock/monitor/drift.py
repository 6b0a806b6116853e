"""Drift of one model's traffic between a reference window and the current one, from the stored traces.

Each statistic compares the two windows with a test from scipy, or a permutation test:

- input and output length (characters) and prompt / completion tokens: two-sample Kolmogorov-Smirnov;
- error rate and guard-block rate: Fisher's exact test on the 2x2 counts;
- input and output meaning: the maximum mean discrepancy (MMD², RBF kernel, median-distance bandwidth) between the
  two windows' sentence embeddings (all-MiniLM-L6-v2 by default), its p-value from label permutations.

The p-values are adjusted for the number of tests (Benjamini-Hochberg, ``scipy.stats.false_discovery_control``);
a statistic has drifted when its adjusted p-value is below ``alpha``.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from scipy import stats
from sqlalchemy import select

from llmdock.monitor.trace_text import last_user_text
from llmdock.store.engine import Store
from llmdock.store.models import Trace

Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass(slots=True)
class Window:
    """What one window's traces say: texts, lengths, tokens, outcomes."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    errors: int = 0
    blocked: int = 0

    @property
    def n(self) -> int:
        return len(self.prompt_tokens)


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


def load_window(store: Store, model: str, since: datetime, until: datetime) -> Window:
    q = select(
        Trace.input, Trace.output, Trace.prompt_tokens, Trace.completion_tokens, Trace.status, Trace.error
    ).where(Trace.model == model, Trace.created_at >= since, Trace.created_at < until)
    w = Window()
    with store.session() as s:
        for row in s.execute(q):
            w.inputs.append(last_user_text(row.input or {}))
            w.outputs.append(row.output or "")
            w.prompt_tokens.append(row.prompt_tokens or 0)
            w.completion_tokens.append(row.completion_tokens or 0)
            w.errors += row.status == "error"
            w.blocked += (row.error or "").startswith("guard_blocked")
    return w


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


async def embedding_row(
    name: str, ref: list[str], cur: list[str], embed: Embed, permutations: int, max_samples: int
) -> DriftRow | None:
    rng = random.Random(0)
    ref = rng.sample(ref, min(max_samples, len(ref)))
    cur = rng.sample(cur, min(max_samples, len(cur)))
    if len(ref) < 5 or len(cur) < 5:
        return None
    vectors = np.asarray(await embed(ref + cur), dtype=np.float64)
    x, y = vectors[: len(ref)], vectors[len(ref) :]
    mmd2, p = mmd_test(x, y, permutations)
    centre = x.mean(0)

    def distance(v: np.ndarray) -> list[float]:
        return [float(d) for d in np.linalg.norm(v - centre, axis=1)]

    return DriftRow(
        name,
        f"MMD², {permutations} permutations",
        f"n={len(ref)}",
        f"n={len(cur)}",
        mmd2,
        p,
        samples=(distance(x), distance(y)),
    )


async def drift(
    ref: Window,
    cur: Window,
    embed: Embed | None,
    *,
    permutations: int = 200,
    max_samples: int = 300,
    alpha: float = 0.05,
) -> list[DriftRow]:
    """Every statistic that both windows have enough traces for, p-values adjusted, drift flagged."""
    rows = [
        ks_row("input length (chars)", [len(t) for t in ref.inputs], [len(t) for t in cur.inputs]),
        ks_row("output length (chars)", [len(t) for t in ref.outputs], [len(t) for t in cur.outputs]),
        ks_row("prompt tokens", ref.prompt_tokens, cur.prompt_tokens),
        ks_row("completion tokens", ref.completion_tokens, cur.completion_tokens),
        rate_row("error rate", ref.errors, ref.n, cur.errors, cur.n),
        rate_row("guard-block rate", ref.blocked, ref.n, cur.blocked, cur.n),
    ]
    if embed is not None:
        for label, a, b in (("inputs", ref.inputs, cur.inputs), ("outputs", ref.outputs, cur.outputs)):
            texts_a, texts_b = [t for t in a if t.strip()], [t for t in b if t.strip()]
            rows.append(
                await embedding_row(
                    f"{label}: meaning (embeddings)", texts_a, texts_b, embed, permutations, max_samples
                )
            )
    found = [r for r in rows if r is not None]
    if not found:
        return []
    adjusted = stats.false_discovery_control([min(max(r.p_value, 0.0), 1.0) for r in found])
    return [
        DriftRow(
            r.name,
            r.test,
            r.reference,
            r.current,
            r.statistic,
            r.p_value,
            float(a),
            bool(a < alpha),
            r.samples,
        )
        for r, a in zip(found, adjusted, strict=True)
    ]
