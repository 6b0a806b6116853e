"""Guard rails kept on counters: each finished request of a guarded experiment bumps its variant's counts, and
the request that takes a variant past a bound flags it; the worker's watch stops it on its next beat.

Nothing here reads the store on the request path: ``observe`` (a trace-sink observer) is a dict lookup and a
few integer increments, and an unguarded request returns after the first lookup. The median-latency bound
needs no list of latencies: the median of the answered requests is above the bound exactly when more than
half of them were slower than it, so a count of the slow ones is enough.

A worker counts what it served since it learnt of the experiment, on top of what the store held then (the
``seed``: one read of the experiment's traces, when a worker first sees it; a restarted worker keeps the
evidence). Several workers each count their own share of the traffic (a random sample of it: the rates are
the same); the first to find a variant past a bound stops it for all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmdock.experiments.live import EXPERIMENT, VARIANT
from llmdock.experiments.results import BLOCKED, VariantStats
from llmdock.experiments.spec import VariantSpec
from llmdock.store.experiment_rows import ExperimentRow
from llmdock.store.trace_records import TraceRecord

BOUND_KEYS = ("max_error_rate", "max_block_rate", "max_p50_ms")


@dataclass(slots=True)
class Tally:
    """One variant's counts: requests, errors, guard blocks (counted in errors too), answered requests, and
    the answered ones slower than the experiment's latency bound."""

    n: int = 0
    errors: int = 0
    blocked: int = 0
    answered: int = 0
    slow: int = 0

    @classmethod
    def of(cls, stats: VariantStats, max_p50_ms: float | None) -> Tally:
        """``stats`` as ``variant_stats`` read them for the experiment whose latency bound is ``max_p50_ms``
        (its slow requests were counted against that bound)."""
        slow = 0 if max_p50_ms is None else stats.latency.slow
        return cls(stats.n, stats.errors, stats.blocked, stats.answered, slow)


@dataclass(frozen=True, slots=True)
class Bounds:
    """An experiment's guard rails as the counters need them; ``stopped``: variants already stopped."""

    max_error_rate: float | None
    max_block_rate: float | None
    max_p50_ms: float | None
    min_samples: int
    stopped: frozenset[str]

    @classmethod
    def of(cls, row: ExperimentRow) -> Bounds | None:
        """The row's bounds, None when it has none (then nothing is counted for it)."""
        g = row.guard
        if all(g.get(k) is None for k in BOUND_KEYS):
            return None
        stopped = frozenset(v.name for v in map(VariantSpec.from_json, row.variants) if v.stopped)
        return cls(g.get("max_error_rate"), g.get("max_block_rate"), g.get("max_p50_ms"),
                   int(g.get("min_samples", 20)), stopped)  # fmt: skip

    def verdict(self, t: Tally) -> str:
        """Why the variant with these counts is stopped; "" while it is within its bounds."""
        if t.n < self.min_samples:
            return ""
        for label, count, bound in (
            ("error rate", t.errors, self.max_error_rate),
            ("guard-block rate", t.blocked, self.max_block_rate),
        ):
            if bound is not None and count / t.n > bound:
                return f"{label} {count / t.n:.3g} > {bound:g} over {t.n} requests"
        if self.max_p50_ms is not None and t.slow * 2 > t.answered:
            return (
                f"latency p50 > {self.max_p50_ms:g} ms ({t.slow} of {t.answered} answered requests slower) "
                f"over {t.n} requests"
            )
        return ""


class GuardTally:
    """The guarded experiments' counters in one worker. ``observe`` runs on the event loop (the request
    path); ``watch``, ``seed`` and ``take`` run in the watch's thread. Each shared dict is only ever
    replaced or given new keys, never mutated in place across threads, so no lock is needed."""

    def __init__(self) -> None:
        self.bounds: dict[str, Bounds] = {}
        self.tallies: dict[tuple[str, str], Tally] = {}
        self.tripped: dict[tuple[str, str], str] = {}

    def watch(self, rows: Iterable[ExperimentRow]) -> list[tuple[ExperimentRow, Bounds]]:
        """Follow the guarded ones among the running ``rows``, with their bounds as they stand now; returns
        those newly seen, to ``seed``. A row no longer running (or no longer guarded) is dropped with its
        counters."""
        bounds = {row.name: (row, b) for row in rows if (b := Bounds.of(row)) is not None}
        kept = {name: b for name, (_, b) in bounds.items() if name in self.bounds}
        self.bounds = kept
        self.tallies = {k: t for k, t in self.tallies.items() if k[0] in kept}
        self.tripped = {k: why for k, why in self.tripped.items() if k[0] in kept}
        return [(row, b) for name, (row, b) in bounds.items() if name not in kept]

    def seed(self, row: ExperimentRow, b: Bounds, stats: dict[str, VariantStats] | None) -> None:
        """Start counting ``row``'s requests, from what the store holds (``variant_stats``; None: nothing)."""
        for name, st in (stats or {}).items():
            self.tallies[(row.name, name)] = tally = Tally.of(st, b.max_p50_ms)
            self._check((row.name, name), b, tally)
        self.bounds = self.bounds | {row.name: b}

    def observe(self, rec: TraceRecord) -> None:
        """A finished request (the trace sink's observer): count it if a guarded experiment took it."""
        name = rec.attributes.get(EXPERIMENT)
        if name is None:
            return
        b = self.bounds.get(name)
        if b is None:
            return
        key = (name, str(rec.attributes.get(VARIANT, "")))
        t = self.tallies.get(key)
        if t is None:
            self.tallies[key] = t = Tally()
        t.n += 1
        t.blocked += bool(rec.error) and rec.error.startswith(BLOCKED)
        if rec.status == "error":
            t.errors += 1
        elif rec.status == "ok":
            t.answered += 1
            if b.max_p50_ms is not None and rec.duration_ms > b.max_p50_ms:
                t.slow += 1
        self._check(key, b, t)

    def _check(self, key: tuple[str, str], b: Bounds, t: Tally) -> None:
        if key[1] not in b.stopped and key not in self.tripped and (why := b.verdict(t)):
            self.tripped[key] = why

    def take(self) -> list[tuple[str, str, str]]:
        """(experiment, variant, why) for each variant flagged since the last call."""
        found = [(e, v, why) for (e, v), why in list(self.tripped.items()) if why]
        for e, v, _ in found:
            self.tripped[(e, v)] = ""  # flagged once: a failed stop (it ended meanwhile) is not retried
        return found
