"""Keeps a worker's ``ExperimentTable`` current, and applies the guard rails, off the request path.

Every ``SYNC_S`` seconds: one query for the highest experiment revision; when it moved, the running
experiments are read again and the table replaced (prompt templates whose experiment changed are dropped
from the worker's prompt cache, so a label ``conclude`` moved is served at once). Guard rails are counted on
the request path (``guard_tally``: the trace sink calls ``observe``); on the same beat, a variant a request
took past a bound is stopped (audited as ``experiment.stop_variant`` by ``experiment-guard``) and the table
reloaded, so it stops within ``SYNC_S`` of the request that crossed the bound; every worker may do it, the
first one wins and the others find it stopped. Every ``GUARD_S`` seconds, canary releases' promote, step and
rollback rules are applied (``experiments.release``: they read the traces, for the sequential test), and at
once when this worker could not load a release's challenger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from sqlalchemy.exc import SQLAlchemyError

from llmdock.errors import LlmdockError
from llmdock.experiments.book import RUNNING, ExperimentBook
from llmdock.experiments.guard_tally import GuardTally
from llmdock.experiments.live import ExperimentTable, LiveExperiment, live_experiment
from llmdock.experiments.results import variant_stats
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.trace_records import TraceRecord

SYNC_S = 0.5
GUARD_S = 5.0
GUARD_ACTOR = Actor("experiment-guard", "gateway")
log = logging.getLogger("llmdock.experiments")


class ExperimentWatch:
    def __init__(
        self,
        store: Store,
        forget_prompt: Callable[[str], None] | None = None,
        on_table: Callable[[ExperimentTable], None] | None = None,
        load_errors: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.book = ExperimentBook(store)
        self.forget_prompt = forget_prompt
        self.on_table = on_table  # told each new table, on the event loop (variant routes to load or drop)
        self.load_errors = load_errors  # served name -> why this worker could not load it (variant routes)
        self._failed: set[str] = set()
        self._table_changed = False
        self.table = ExperimentTable()
        self._seen: tuple[int, int] = (-1, -1)
        self._live: dict[str, LiveExperiment] = {}
        self._task: asyncio.Task[None] | None = None
        self._guarded = 0.0
        self._stale: set[str] = set()
        self.tally = GuardTally()
        self.observers: list[Callable[[TraceRecord], None]] | None = None  # the trace sink's (runtime)

    def load(self) -> bool:
        """Re-read the running experiments if the store's revision moved; returns whether it did. The templates
        of experiments that changed are remembered for ``forget_changed`` (to run on the event loop)."""
        seen = self.book.revision()
        if seen == self._seen:
            return False
        live = {}
        rows = self.book.rows(RUNNING)
        for row, bounds in self.tally.watch(rows):  # newly guarded: count on from what the store holds
            self.tally.seed(row, bounds, variant_stats(self.book.store, row))
        for row in rows:
            exp = live_experiment(row)
            if exp is not None:
                live[exp.name] = exp
        changed = {e for name, e in self._live.items() if live.get(name) != e}
        changed |= {e for name, e in live.items() if self._live.get(name) != e}
        self._stale |= {value for e in changed for key, value in e.match if key == "prompt"}
        self.table, self._live, self._seen = ExperimentTable(live.values()), live, seen
        self._table_changed = True
        return True

    def forget_changed(self) -> None:
        """Drop the worker's cached versions of templates whose experiment changed (on the event loop: the
        prompt cache is not shared with threads)."""
        stale, self._stale = self._stale, set()
        if self._table_changed and self.on_table is not None:
            self._table_changed = False
            self.on_table(self.table)
        if self.forget_prompt is not None:
            for name in stale:
                self.forget_prompt(name)
        self._count_if_guarded()

    def _count_if_guarded(self) -> None:
        """Hang the guard counters on the trace sink while a guarded experiment runs, and take them off when
        none does (on the event loop, where the sink reads its observers: nothing pays for them unused)."""
        if self.observers is None:
            return
        counting = self.observe in self.observers
        if bool(self.tally.bounds) and not counting:
            self.observers.append(self.observe)
        elif not self.tally.bounds and counting:
            self.observers.remove(self.observe)

    def observe(self, rec: TraceRecord) -> None:
        """The trace sink's observer (the request path): count a guarded experiment's request."""
        self.tally.observe(rec)

    def apply_guards(self) -> list[tuple[str, str, str]]:
        """Stop the variants a request took past a bound; returns (experiment, variant, reason) for each one
        stopped. Reads nothing from the store unless there is one to stop."""
        stopped = []
        for name, variant, reason in self.tally.take():
            try:
                self.book.stop_variant(name, variant, reason, GUARD_ACTOR)
            except LlmdockError:  # another worker stopped it (or the experiment ended) meanwhile
                continue
            log.warning("experiment %s: variant %s stopped: %s", name, variant, reason)
            stopped.append((name, variant, reason))
        return stopped

    def apply_releases(self) -> list[tuple[str, str, str]]:
        """Promote or roll back the running canary releases whose rules say so (``experiments.release``)."""
        rows = [r for r in self.book.rows(RUNNING) if "release" in r.guard]
        if not rows:
            return []
        from llmdock.experiments.release import judge_releases  # scipy: imported only once a release runs

        done = judge_releases(self.book, rows, dict(self.load_errors()))
        for name, action, why in done:
            log.warning(
                "release %s: %s (%s)", name, "promoted" if action == "promote" else "rolled back", why
            )
        return done

    def start(self) -> None:
        """Load once now (the first request sees the experiments), then keep watching in the background."""
        self._tick(guards=False)
        self.forget_changed()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _tick(self, guards: bool) -> None:
        try:
            self.load()
            failed = set(self.load_errors())
            if failed - self._failed:  # a challenger that cannot load here: roll its release back now
                self.apply_releases()
                self.load()
            self._failed = failed
            if not guards:
                return
            acted = bool(self.apply_guards())
            if time.monotonic() - self._guarded >= GUARD_S:
                self._guarded = time.monotonic()
                acted |= bool(self.apply_releases())
            if acted:
                self.load()
        except (LlmdockError, SQLAlchemyError) as exc:  # store away: keep serving the table we have
            log.warning("experiments: cannot read the store: %s", str(exc).splitlines()[0])

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_S)
            await asyncio.to_thread(self._tick, True)
            self.forget_changed()
