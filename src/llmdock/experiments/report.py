"""``llmdock experiments status``: per variant what it did, and each variant against the first (the control).

Measures compared: the thumbs-up rate and every other feedback score (means), the online-evaluation scores
(``online eval: NAME``, means, from the sampled traces), the error rate, latency.
Significance is the sequential test's (``experiments.sequential``), so reading the status often is safe.
``auto_winner`` picks the primary measure (thumbs-up rate if there are thumbs, else the rating, else the
first named feedback score, else the first online-evaluation score) and names a winner only when a variant differs from the control significantly on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llmdock.evaluate.stats import mean_ci, wilson
from llmdock.experiments.results import VariantStats, variant_stats
from llmdock.experiments.sequential import (
    SEQUENTIAL_TEST,
    Difference,
    compare_means,
    compare_moments,
    compare_rates,
)
from llmdock.experiments.spec import VariantSpec
from llmdock.store.engine import Store
from llmdock.store.experiment_rows import ExperimentRow

THUMBS_UP = "thumbs-up rate"
ONLINE = "online eval: "  # the measures of online-evaluation scores (``online_eval`` rules)


@dataclass
class Report:
    name: str
    status: str
    winner: str
    variants: list[dict[str, Any]]
    differences: dict[str, list[Difference]] = field(default_factory=dict)  # by variant (not the control)
    test: str = SEQUENTIAL_TEST

    def primary(self) -> str | None:
        """The measure ``--auto`` decides on."""
        measures = [d.measure for diffs in self.differences.values() for d in diffs]
        for preferred in (THUMBS_UP, "rating"):
            if preferred in measures:
                return preferred
        named = [m for m in measures if m not in ("error rate", "latency ms")]
        named.sort(key=lambda m: m.startswith(ONLINE))  # feedback first, online evaluation after
        return named[0] if named else None


def _variant_view(spec: VariantSpec, st: VariantStats) -> dict[str, Any]:
    thumbs = st.scores.get("thumbs", [])
    scores = {}
    for name, values in sorted(st.scores.items()):
        est = wilson(int(sum(values)), len(values)) if name == "thumbs" else mean_ci(values)
        scores[THUMBS_UP if name == "thumbs" else name] = {
            "n": est.n, "mean": est.mean, "low": est.low, "high": est.high,
        }  # fmt: skip
    online = {
        name: {"n": est.n, "mean": est.mean, "low": est.low, "high": est.high}
        for name, est in ((name, mean_ci(values)) for name, values in sorted(st.online.items()))
    }
    return {
        "name": spec.name,
        "variant": spec.describe(),
        "weight": spec.weight,
        "stopped": spec.stopped,
        "requests": st.n,
        "errors": st.errors,
        "error_rate": st.rate(st.errors),
        "guard_blocked": st.blocked,
        "latency_p50_ms": st.p50_ms,
        "latency_p95_ms": st.p95_ms,
        "mean_tokens": st.tokens / st.answered if st.answered else math.nan,
        "cost": st.cost,
        "feedback": len(thumbs) + sum(len(v) for k, v in st.scores.items() if k != "thumbs"),
        "scores": scores,
        "online_eval": online,
    }


def _differences(a: VariantStats, b: VariantStats) -> list[Difference]:
    found = [
        compare_rates("error rate", a.errors, a.n, b.errors, b.n),
        compare_moments("latency ms", a.latency.moments, b.latency.moments),
    ]
    ta, tb = a.scores.get("thumbs", []), b.scores.get("thumbs", [])
    found.append(compare_rates(THUMBS_UP, int(sum(ta)), len(ta), int(sum(tb)), len(tb)))
    for name in sorted((set(a.scores) & set(b.scores)) - {"thumbs"}):
        found.append(compare_means(name, a.scores[name], b.scores[name]))
    for name in sorted(set(a.online) & set(b.online)):
        found.append(compare_means(ONLINE + name, a.online[name], b.online[name]))
    return [d for d in found if d is not None]


def experiment_report(store: Store, row: ExperimentRow) -> Report:
    stats = variant_stats(store, row)
    specs = [VariantSpec.from_json(v) for v in row.variants]
    report = Report(row.name, row.status, row.winner, [_variant_view(s, stats[s.name]) for s in specs])
    control = stats[specs[0].name]
    for s in specs[1:]:
        report.differences[s.name] = _differences(control, stats[s.name])
    return report


def lower_is_better(measure: str) -> bool:
    return measure in ("error rate", "latency ms")


def auto_winner(store: Store, row: ExperimentRow) -> tuple[str | None, str]:
    """(the winning variant, why) — or (None, why not) when nothing is significant yet."""
    report = experiment_report(store, row)
    primary = report.primary()
    if primary is None:
        return None, "no feedback scores to decide on yet"
    control = row.variants[0]["name"]
    best: tuple[float, str, Difference] | None = None
    for variant, diffs in report.differences.items():
        d = next((d for d in diffs if d.measure == primary), None)
        if d is None:
            continue
        if not d.significant:
            continue
        gain = -d.delta if lower_is_better(primary) else d.delta
        candidate = (gain, variant if gain > 0 else control, d)
        if best is None or candidate[0] > best[0]:
            best = candidate
    if best is None:
        return None, f"no variant differs significantly from {control} on {primary} ({SEQUENTIAL_TEST})"
    gain, winner, d = best
    return winner, (
        f"{winner} wins on {primary}: {d.mean_b:.3g} vs {d.mean_a:.3g}, difference {d.delta:+.3g} "
        f"[{d.low:+.3g}, {d.high:+.3g}], sequential p={d.p_sequential:.3g}"
    )
