"""Differentially private aggregate statistics of a dataset, released through OpenDP (no hand-made noise).

The privacy unit is one row (each person contributes one row). The budget ``epsilon`` is split evenly over the
queries: the row count, and for each numeric column (or ``tokens``: characters per row as a proxy, when no
column is named) its sum and mean, clamped to the given bounds. Each released value comes with the scale of
the Laplace noise added, so a reader knows how far from the truth it may be. Nothing but the noisy values
leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmdock.datasets.rows import Row, row_text
from llmdock.errors import InvalidRequest

Bounds = tuple[float, float]


def _values(rows: Sequence[Row], column: str, bounds: Bounds) -> list[float]:
    out = []
    for r in rows:
        raw = len(row_text(r)) if column == "chars" else r["meta"].get(column)
        try:
            value = float(raw) if raw is not None else bounds[0]
        except (TypeError, ValueError):
            value = bounds[0]  # a value that is not a number counts as the lower bound, as a missing one does
        out.append(min(max(value, bounds[0]), bounds[1]))
    return out


def release(rows: Sequence[Row], columns: dict[str, Bounds], epsilon: float) -> dict[str, Any]:
    """The noisy count, and each column's noisy sum and mean, under ``epsilon`` in total."""
    import opendp.prelude as dp

    if epsilon <= 0:
        raise InvalidRequest("epsilon must be above 0", param="epsilon")
    for name, (lo, hi) in columns.items():
        if not lo < hi:
            raise InvalidRequest(f"bounds of {name!r}: the lower must be below the upper", param="bounds")
    dp.enable_features("contrib")
    queries = 1 + 2 * len(columns)
    count_ctx = dp.Context.compositor(
        data=[0.0] * len(rows),
        privacy_unit=dp.unit_of(contributions=1),
        privacy_loss=dp.loss_of(epsilon=epsilon / queries),
        split_evenly_over=1,
        domain=dp.vector_domain(dp.atom_domain(T=float, nan=False)),
    )
    count_q = count_ctx.query().count().laplace()
    noisy_n = max(int(count_q.release()), 1)
    out: dict[str, Any] = {
        "epsilon": epsilon,
        "queries": queries,
        "count": {"value": noisy_n, "scale": count_q.param()},
    }
    for name, bounds in columns.items():
        ctx = dp.Context.compositor(
            data=_values(rows, name, bounds),
            privacy_unit=dp.unit_of(contributions=1),
            privacy_loss=dp.loss_of(epsilon=2 * epsilon / queries),
            split_evenly_over=2,
            domain=dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        )
        total = ctx.query().clamp(bounds).sum().laplace()
        # the mean over a size fixed by the noisy count (OpenDP resizes, imputing the midpoint): no more budget
        mean = (
            ctx.query()
            .clamp(bounds)
            .resize(size=noisy_n, constant=(bounds[0] + bounds[1]) / 2)
            .mean()
            .laplace()
        )
        out[name] = {
            "bounds": list(bounds),
            "sum": {"value": total.release(), "scale": total.param()},
            "mean": {"value": mean.release(), "scale": mean.param()},
        }
    return out
