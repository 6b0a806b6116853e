"""The usage and monitoring pages' totals: the viewer's team's traces of the last hours (the open one
included), from the hourly totals ``llmdock usage`` reads too (``store.usage_hours``: closed hours kept once,
retention and erasure subtracted, the rest from the traces)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmdock.feedback import Scope
from llmdock.store.engine import Store
from llmdock.store.usage_hours import HOUR_FORMAT, TOTALS, rollups


def totals_by(
    store: Store, scope: Scope, hours: int, dims: tuple[str, ...]
) -> dict[str, dict[str, list[float]]]:
    """The scope's traces of the last ``hours`` hours (the open one included), totalled (``TOTALS``) per value
    of each dimension in ``dims`` (``hour``, ``day``, ``model``, ``team``, ``key``), from one read of the kept
    hours."""
    now = datetime.now(UTC)
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    found = rollups(store, since, now, [(d,) for d in dims], team=scope.team)
    return {d: {key[0]: t for key, t in f.items()} for d, f in zip(dims, found, strict=True)}


def hourly(store: Store, scope: Scope, hours: int) -> dict[str, list[float]]:
    """Columns for the charts, one value per hour with traffic: unix time, requests, errors, guard blocks,
    mean and max latency (ms), cost."""
    per_hour = totals_by(store, scope, hours, ("hour",))["hour"]
    names = ("t", "requests", "errors", "blocked", "mean_ms", "max_ms", "cost")
    cols: dict[str, list[float]] = {k: [] for k in names}
    for hour in sorted(per_hour):
        t = dict(zip(TOTALS, per_hour[hour], strict=True))
        n = t["requests"]
        at = datetime.strptime(hour, HOUR_FORMAT).replace(tzinfo=UTC).timestamp()
        mean = t["sum_ms"] / n if n else 0.0
        values = (at, n, t["errors"], t["blocked"], mean, t["max_ms"], t["cost"])
        for key, value in zip(names, values, strict=True):
            cols[key].append(round(value, 6))
    return cols
