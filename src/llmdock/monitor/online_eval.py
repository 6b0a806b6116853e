"""Sampled online evaluation: a share of answered traffic scored off the request path, from the stored traces.

Nothing runs on the request path. :class:`OnlineEvaluator` runs in the background of one ``llmdock serve``
worker at a time (a lock file under ``home``) and reads the stored traces, ``settle`` seconds behind now (the
time a trace takes to reach the store through the journal), from where it stopped: the cursor, a row of
``monitor_eval_cursors``. For each trace a rule takes (online_rules.py: traffic matched, hash-sampled), it
writes a claim (``monitor_eval_claims``) in the same transaction that moves the cursor, then queues it; at
most ``queue`` claims wait. ``concurrency`` tasks score the queue with the rules' metrics (a judge's model call
is the slow part) and store the scores as feedback rows on the trace (source ``evaluator``, named after the
metric) together with the claim's outcome, in one transaction. A restart re-queues the claims left
unfinished; a finished claim is never scored again, and the cursor never reads a trace twice.

When scoring falls more than ``max_lag`` behind, the cursor skips ahead and the skipped traces are counted as
dropped (``llmdock_online_eval_traces_total{outcome="dropped"}``): the evaluator sheds load, never requests.
Traces that reach the store more than ``settle`` after they were answered (the store was away) are not scored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select

from llmdock.backends.operations import TEXT_OPERATIONS
from llmdock.config import Settings
from llmdock.config.monitor_settings import OnlineEvalSettings
from llmdock.evaluate.case import MetricFactory
from llmdock.feedback.book import FeedbackBook
from llmdock.monitor.leader import LeaderLock
from llmdock.monitor.online_rules import SOURCE, Candidate, ScoringRule, build_rules, case_of
from llmdock.pipeline.env import StageEnv
from llmdock.store.engine import Store
from llmdock.store.keyring import open_trace_bodies
from llmdock.store.models import Trace
from llmdock.store.monitor_eval_rows import EvalClaim, EvalCursor

log = logging.getLogger("llmdock.online_eval")
CURSOR = "online_eval"


class EvalMetrics(Protocol):
    """Where the evaluator reports to Prometheus (monitor/metrics.py's RequestMetrics)."""

    def online_score(self, model: str, metric: str, value: float) -> None: ...

    def online_traces(self, model: str, outcome: str, n: int = 1) -> None: ...

    def online_backlog(self, n: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Job:
    rule: str
    trace_id: str
    model: str


@dataclass(frozen=True, slots=True)
class Scored:
    job: Job
    scores: list[tuple[str, float, str]]
    outcome: str  # scored | error: … | skipped: …


class OnlineEvaluator:
    def __init__(
        self,
        settings: OnlineEvalSettings,
        rules: list[ScoringRule],
        store: Store,
        book: FeedbackBook,
        *,
        metrics: EvalMetrics | None = None,
        lock: LeaderLock | None = None,
    ) -> None:
        self.settings = settings
        self.rules = {r.name: r for r in rules}
        self.store = store
        self.book = book
        self.metrics = metrics
        self.lock = lock
        self.queue: asyncio.Queue[Job] = asyncio.Queue(max(settings.queue, len(rules)))
        self._rescued = False

    # -- reading the traces (in a thread) ------------------------------------------------------------

    def _claim(self, now: datetime, room: int) -> tuple[list[Job], dict[str, int]]:
        """Claim the traces the rules take after the cursor (at most ``room`` claims); move the cursor past
        what was read. Returns the claims and the traces skipped for lag, by model."""
        upper = now - timedelta(seconds=self.settings.settle)
        dropped: dict[str, int] = {}
        with self.store.session() as s, s.begin():
            cursor = s.get(EvalCursor, CURSOR)
            if cursor is None:  # the first look: score from now on, not the history
                s.add(EvalCursor(name=CURSOR, created_at=upper, trace_id=""))
                return [], dropped
            floor = upper - timedelta(seconds=self.settings.max_lag)
            if cursor.created_at < floor:
                dropped = self._skipped(s, cursor, floor)
                cursor.created_at, cursor.trace_id = floor, ""
            rows = list(s.execute(self._page(cursor, upper)))
            jobs: list[Job] = []
            read = 0
            for row in rows:
                c = Candidate.of(row.id, row.created_at, row.model, row.operation, row.attributes)
                taken = [r for r in self.rules.values() if r.takes(c)]
                if len(jobs) + len(taken) > room:
                    break
                for rule in taken:
                    jobs.append(Job(rule.name, c.id, c.model))
                    s.add(
                        EvalClaim(
                            rule=rule.name,
                            trace_id=c.id,
                            model=c.model,
                            trace_created_at=c.created_at,
                            claimed_at=now,
                        )
                    )
                read += 1
            if read == len(rows) and len(rows) < self.settings.batch:
                cursor.created_at, cursor.trace_id = upper, ""  # read everything up to the settle line
            elif read:
                cursor.created_at, cursor.trace_id = rows[read - 1].created_at, rows[read - 1].id
        return jobs, dropped

    def _page(self, cursor: EvalCursor, upper: datetime) -> Any:
        q = (
            select(Trace.id, Trace.created_at, Trace.model, Trace.operation, Trace.attributes)
            .where(
                or_(
                    Trace.created_at > cursor.created_at,
                    and_(Trace.created_at == cursor.created_at, Trace.id > cursor.trace_id),
                ),
                Trace.created_at < upper,
                Trace.status == "ok",
                Trace.operation.in_(TEXT_OPERATIONS),
            )
            .order_by(Trace.created_at, Trace.id)
            .limit(self.settings.batch)
        )
        models = [r.spec.models for r in self.rules.values()]
        if models and all(models):
            q = q.where(Trace.model.in_({m for ms in models for m in ms}))
        return q

    def _skipped(self, s: Any, cursor: EvalCursor, floor: datetime) -> dict[str, int]:
        q = (
            select(Trace.model, func.count())
            .where(Trace.created_at >= cursor.created_at, Trace.created_at < floor, Trace.status == "ok")
            .group_by(Trace.model)
        )
        found = {str(m): int(n) for m, n in s.execute(q)}
        log.warning("online evaluation is more than max_lag behind: skipped %d traces", sum(found.values()))
        return found

    def _unfinished(self) -> list[Job]:
        q = select(EvalClaim).where(EvalClaim.done_at.is_(None)).order_by(EvalClaim.trace_created_at)
        with self.store.session() as s:
            return [Job(c.rule, c.trace_id, c.model) for c in s.scalars(q) if c.rule in self.rules]

    # -- scoring -----------------------------------------------------------------------------------

    def _load(self, job: Job) -> Trace | None:
        with self.store.session() as s:
            return s.get(Trace, job.trace_id)

    async def evaluate(self, job: Job) -> Scored:
        """Score one claimed trace and store its scores with the claim's outcome."""
        trace = await asyncio.to_thread(self._load, job)
        scored = Scored(job, [], "error: the trace is no longer stored")
        if trace is not None:
            inputs, output = open_trace_bodies(self.store.keyring, trace.id, trace.input, trace.output)
            facts = {
                c: getattr(trace, c) for c in ("duration_ms", "prompt_tokens", "completion_tokens", "cost")
            }
            case, out = case_of(trace.id, inputs if isinstance(inputs, dict) else {}, output, facts)
            if not out.text:
                scored = Scored(job, [], "skipped: the trace keeps no answer text (trace.store_bodies)")
            else:
                scores, errors = await self.rules[job.rule].score(case, out)
                scored = Scored(job, scores, ("error: " + "; ".join(errors))[:500] if errors else "scored")
        await asyncio.to_thread(self._finish, scored, trace)
        if self.metrics is not None:
            for name, value, _ in scored.scores:
                self.metrics.online_score(job.model, name, value)
            self.metrics.online_traces(job.model, scored.outcome.partition(":")[0])
        return scored

    def _finish(self, scored: Scored, trace: Trace | None) -> None:
        job, now = scored.job, datetime.now(UTC)
        with self.store.session() as s, s.begin():
            claim = s.get(EvalClaim, (job.rule, job.trace_id))
            if claim is None or claim.done_at is not None:
                return  # finished elsewhere: never store a second set of scores
            claim.done_at, claim.outcome = now, scored.outcome
            if trace is None:  # the trace is gone: the claim is finished, there is nothing to score on
                return
            for name, value, reason in scored.scores:
                s.add(
                    self.book.new_row(
                        trace,
                        name=name,
                        value=value,
                        source=SOURCE,
                        created_by=f"online-eval:{job.rule}",
                        comment=reason,
                        now=now,
                    )
                )

    # -- the loop ----------------------------------------------------------------------------------

    async def look(self) -> int:
        """Claim and queue what is due (the rescued claims first, once); returns how many were queued."""
        rescued = 0
        if not self._rescued:
            for job in await asyncio.to_thread(self._unfinished):
                await self.queue.put(job)
                rescued += 1
            self._rescued = True
        room = self.queue.maxsize - self.queue.qsize()
        if room < len(self.rules):
            return rescued
        jobs, dropped = await asyncio.to_thread(self._claim, datetime.now(UTC), room)
        for job in jobs:
            self.queue.put_nowait(job)
        if self.metrics is not None:
            for model, n in dropped.items():
                self.metrics.online_traces(model, "dropped", n)
            self.metrics.online_backlog(self.queue.qsize())
        return rescued + len(jobs)

    async def drain(self) -> list[Scored]:
        """Score everything queued now, in this task (``llmdock monitor evaluate``, tests)."""
        done = []
        while not self.queue.empty():
            done.append(await self.evaluate(self.queue.get_nowait()))
            self.queue.task_done()
        return done

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.evaluate(job)
            except Exception:  # one trace failing must not stop the evaluator; its claim stays unfinished
                log.exception("online evaluation of trace %s (rule %s) failed", job.trace_id, job.rule)
            finally:
                self.queue.task_done()

    async def run(self) -> None:
        """Look every ``every`` seconds while this process leads; score with ``concurrency`` tasks."""
        loop = asyncio.get_running_loop()
        workers = [loop.create_task(self._work()) for _ in range(self.settings.concurrency)]
        try:
            while True:
                try:
                    if self.lock is None or self.lock.held():
                        await self.look()
                except Exception:  # e.g. the store is away: try again at the next look
                    log.exception("online evaluation: cannot read the traces")
                await asyncio.sleep(self.settings.every)
        finally:
            for w in workers:
                w.cancel()
            if self.lock is not None:
                self.lock.release()


def evaluator_for(
    settings: Settings, env: StageEnv, factories: Mapping[str, MetricFactory], metrics: EvalMetrics | None
) -> OnlineEvaluator:
    """The serving runtime's evaluator: the rules built (ConfigError for a bad one), scores written as
    feedback redacted and sealed like the users', one process at a time (``<home>/online-eval.lock``)."""
    assert env.store is not None
    return OnlineEvaluator(
        settings.online_eval,
        build_rules(settings, env, factories),
        env.store,
        FeedbackBook(env.store, env.privacy),
        metrics=metrics,
        lock=LeaderLock(settings.home / "online-eval.lock"),
    )
