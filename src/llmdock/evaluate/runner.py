"""``run(suite)``: every case x target x repeat through its target, scored by the suite's checks, stored as it
finishes. Cases run concurrently (the embedded model batches them). Interrupted — Ctrl-C or ``kill -9`` —
a run resumes with ``run_id``: only what is missing (or errored) is asked again.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from llmdock.errors import ConfigError, InvalidRequest
from llmdock.evaluate.case import Case, CaseResult, Check, Metric, MetricError, MetricFactory, Output, Score
from llmdock.evaluate.results import create_run, done_keys, finish_run, get_run, save_result
from llmdock.evaluate.suite import Suite
from llmdock.evaluate.targets import Serving, Target, build_target
from llmdock.store.engine import Store

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv


@dataclass
class RunOutcome:
    run_id: str
    results: list[CaseResult]  # what this call scored (a resume: only the missing ones)
    already_done: int


def build_metrics(
    suite: Suite, factories: Mapping[str, MetricFactory], env: StageEnv | None
) -> list[tuple[Check, Metric]]:
    """Each check's metric, checked before anything is asked: an unknown type, a bad value, or a reference
    metric over cases without ``expected`` stop here with the suite's ``file:line``."""
    built = []
    for check in suite.checks:
        factory = factories.get(check.type)
        if factory is None:
            known = ", ".join(sorted(factories))
            raise ConfigError(f"unknown metric {check.type!r} (known: {known})", where=check.where)
        if factory.needs_reference and check.value is None:
            missing = [c for c in suite.cases if c.expected is None]
            if missing:
                raise ConfigError(
                    f"{check.label} compares with `expected`, and case {missing[0].id} ({missing[0].where}) "
                    f"has none ({len(missing)} such cases)",
                    where=check.where,
                )
        try:
            built.append((check, factory(check, env)))
        except MetricError as exc:
            raise ConfigError(str(exc), where=check.where) from None
    return built


async def score_case(
    target: str,
    case: Case,
    repeat: int,
    output: Output,
    metrics: list[tuple[Check, Metric]],
    threshold: float | None,
) -> CaseResult:
    if output.error:
        return CaseResult(target, case.id, repeat, output, {}, 0.0, False, output.error)
    scores: dict[str, Score] = {}
    for check, metric in metrics:
        try:
            scores[check.label] = await metric.score(case, output)
        except MetricError as exc:
            return CaseResult(target, case.id, repeat, output, scores, 0.0, False, f"{check.label}: {exc}")
    total = sum(c.weight for c, _ in metrics) or 1.0
    weighted = sum(c.weight for c, _ in metrics if scores[c.label].passed) / total
    passed = all(s.passed for s in scores.values()) if threshold is None else weighted >= threshold
    return CaseResult(target, case.id, repeat, output, scores, weighted, passed)


class CaseScoring(Protocol):
    """Answers and scores one case on one target: :class:`CaseScorer` in this process, or an executor's
    (e.g. Ray workers, each holding a CaseScorer of its own)."""

    async def score(self, target: str, case: Case, repeat: int) -> CaseResult: ...

    async def close(self) -> None: ...


class CaseScorer:
    """A suite's targets and checks, built once (the checks are checked before anything is asked)."""

    def __init__(self, suite: Suite, factories: Mapping[str, MetricFactory], serving: Serving | None) -> None:
        self.spec = suite.spec
        self.metrics = build_metrics(suite, factories, serving.stage_env if serving is not None else None)
        self.targets: dict[str, Target] = {}
        for spec in suite.spec.targets:
            target = build_target(spec, serving)
            self.targets[target.label] = target

    async def score(self, target: str, case: Case, repeat: int) -> CaseResult:
        output = await self.targets[target].answer(case, self.spec.seed + repeat, self.spec.max_tokens)
        return await score_case(target, case, repeat, output, self.metrics, self.spec.threshold)

    async def close(self) -> None:
        for target in self.targets.values():
            await target.close()


def _start(
    suite: Suite, store: Store, run_id: str | None, n_expected: int, by: str
) -> tuple[str, set[tuple[str, str, int]]]:
    if run_id is None:
        run_id = secrets.token_hex(16)  # 32 hex digits, like a trace id
        config = suite.spec.model_dump(by_alias=True, mode="json")
        create_run(store, run_id, suite.name, str(suite.path), suite.sha256, config, n_expected, by)
        return run_id, set()
    run = get_run(store, run_id)
    if run.suite_sha256 != suite.sha256:
        raise InvalidRequest(
            f"run {run.id} was made from another version of {suite.path} or its dataset: start a new run",
            param="resume",
        )
    return run.id, done_keys(store, run.id)


async def run(
    suite: Suite,
    store: Store,
    factories: Mapping[str, MetricFactory],
    serving: Serving | None = None,
    *,
    resume: str | None = None,
    concurrency: int | None = None,
    show_progress: bool = True,
    by: str = "",
    scorer: CaseScoring | None = None,
) -> RunOutcome:
    """Run (or resume) a suite; every result is in the store as soon as it is scored. ``scorer``: who
    answers and scores the cases (an executor's); by default a :class:`CaseScorer` in this process."""
    spec = suite.spec
    scorer = scorer or CaseScorer(suite, factories, serving)
    labels = [t.label for t in spec.targets]
    n_expected = len(labels) * len(suite.cases) * spec.repeats
    run_id, done = _start(suite, store, resume, n_expected, by)
    todo = [
        (label, case, r)
        for r in range(spec.repeats)
        for case in suite.cases
        for label in labels
        if (label, case.id, r) not in done
    ]
    results: list[CaseResult] = []
    gate = asyncio.Semaphore(concurrency or spec.concurrency)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task(f"{suite.name} ({run_id[:8]})", total=n_expected, completed=len(done))

        async def one(label: str, case: Case, repeat: int) -> None:
            async with gate:
                result = await scorer.score(label, case, repeat)
                await asyncio.to_thread(save_result, store, run_id, case, result, resuming=resume is not None)
                results.append(result)
                progress.advance(task)

        try:
            await asyncio.gather(*(one(t, c, r) for t, c, r in todo))
        except BaseException:
            finish_run(store, run_id, "interrupted")
            raise
        finally:
            await scorer.close()
    finish_run(store, run_id, "done")
    return RunOutcome(run_id, results, len(done))
