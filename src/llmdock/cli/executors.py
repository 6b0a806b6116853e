"""Where ``llmdock batch run``, ``eval run`` and ``jobs run`` compute (``--executor local|ray``), and what a
Ray worker builds: :class:`ServedRows` (the served pipeline's rows on a runtime of its own, also the local
executor's) and :class:`WorkerScorer` (a suite's targets and checks). They are built here, in the composition
root, because ``llmdock.jobs`` knows neither the runtime nor the gateway; the workers get them as picklable
builders (:class:`~llmdock.jobs.executor.WorkerBuilders`)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import typer

from llmdock.jobs.executor import ExecutorSpec, WorkerBuilders

EXECUTOR = typer.Option(None, "--executor", help="local, or ray: workers on a Ray cluster [local]")
ADDRESS = typer.Option(None, "--address", help="The Ray cluster: auto, HOST:PORT or ray://HOST:10001 [auto]")
WORKERS = typer.Option(None, "--workers", min=1, help="Ray workers, each with its own runtime [one per node]")


class ServedRows:
    """The served pipeline's rows in this process (on a started runtime): what each Ray worker holds too."""

    def __init__(self, runtime: Any) -> None:
        from llmdock.gateway.batch_rows import PipelineRows

        self.runtime = runtime
        self.rows = PipelineRows(runtime)

    @classmethod
    async def start(cls, settings: Any) -> ServedRows:
        from llmdock.plugins import load_plugins
        from llmdock.runtime import Runtime

        runtime = Runtime(settings, plugins=load_plugins())
        try:
            await runtime.start()
        except BaseException:
            await runtime.close()
            raise
        return cls(runtime)

    async def answer(self, url: str, body: dict[str, Any]) -> Any:
        return await self.rows.answer(url, body)

    async def close(self) -> None:
        await self.runtime.close()


async def rows_on_ray(settings: Any, spec: ExecutorSpec) -> Any:
    from llmdock.jobs.ray_executor import RayRows, pooled

    return await pooled(functools.partial(ServedRows.start, settings), spec, RayRows)


async def eval_on_ray(
    settings: Any, suite: Any, spec: ExecutorSpec, resume: str | None, concurrency: int | None, by: str
) -> Any:
    """The run kept in this process's store; its cases answered and scored by Ray workers, each with a
    runtime of its own (:class:`WorkerScorer`)."""
    from llmdock.cli.eval_cmd import open_store_of
    from llmdock.evaluate.results import load_results
    from llmdock.evaluate.runner import run
    from llmdock.jobs.ray_executor import RayScorer, pooled

    store = open_store_of(settings)
    try:
        scorer = await pooled(functools.partial(WorkerScorer.start, settings, suite), spec, RayScorer)
        outcome = await run(
            suite, store, {}, None, resume=resume, concurrency=concurrency, by=by, scorer=scorer
        )
        return outcome.run_id, await asyncio.to_thread(load_results, store, outcome.run_id)
    finally:
        store.close()


class WorkerScorer:
    """A suite's targets and checks on a runtime of its own: what each Ray worker of an evaluation holds."""

    def __init__(self, scorer: Any, runtime: Any) -> None:
        self.scorer = scorer
        self.runtime = runtime

    @classmethod
    async def start(cls, settings: Any, suite: Any) -> WorkerScorer:
        from llmdock.evaluate.runner import CaseScorer
        from llmdock.plugins import load_plugins
        from llmdock.runtime import Runtime

        plugins = load_plugins()
        runtime = Runtime(settings, plugins=plugins)
        try:
            return cls(CaseScorer(suite, plugins.metrics, runtime), runtime)
        except BaseException:
            await runtime.close()
            raise

    async def score(self, target: str, case: Any, repeat: int) -> Any:
        return await self.scorer.score(target, case, repeat)

    async def close(self) -> None:
        await self.scorer.close()
        await self.runtime.close()


def worker_builders(settings: Any) -> WorkerBuilders:
    """What a pipeline's ``batch.run`` and ``eval.*`` steps have Ray workers build."""
    return WorkerBuilders(
        rows=functools.partial(ServedRows.start, settings),
        scorer=lambda suite: functools.partial(WorkerScorer.start, settings, suite),
    )
