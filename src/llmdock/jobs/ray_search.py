"""optuna trials on Ray (``llmdock finetune search --executor ray``): each worker (an async Ray actor, 1 CPU)
holds a :class:`~llmdock.finetune.search_worker.SearchWorker` and runs one trial at a time; as many trials run
at once as there are workers. The study stays in the store (optuna's journal, ``finetune_search_logs``), which
every worker reads and writes: the sampler of each new trial knows every stored trial, and the pruner compares
a trial with every worker's. A search stopped at any point continues, like a local one, with the trials it
still lacks; the calling process keeps the progress bar and writes the best config.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmdock.finetune.search import TrialRunner
from llmdock.jobs.executor import Builder, ExecutorSpec
from llmdock.jobs.ray_executor import RayPool, probe


def trials_on_ray(build: Builder, spec: ExecutorSpec) -> TrialRunner:
    """A :data:`~llmdock.finetune.search.TrialRunner` over workers that ``build`` makes (a SearchWorker)."""

    def run(study: Any, n: int, tick: Callable[[], None]) -> None:
        asyncio.run(_trials(build, spec, len(study.get_trials(deepcopy=False)), n, tick))

    return run


def search_on_ray(config_path: Path, settings: Any, spec: ExecutorSpec) -> TrialRunner:
    """The trials of a config file on Ray, each worker loading its base and rows itself; the address is
    probed now, before the study is touched."""
    from llmdock.finetune.search_worker import SearchWorker

    probe(spec)

    return trials_on_ray(functools.partial(SearchWorker.start, str(config_path), settings), spec)


async def _trials(build: Builder, spec: ExecutorSpec, known: int, n: int, tick: Callable[[], None]) -> None:
    pool = await RayPool(build, spec).start()  # the address is probed first: nothing runs on a dead one
    try:
        free = asyncio.Semaphore(len(pool.actors))  # one trial per worker at a time

        async def one(i: int) -> None:
            async with free:
                await pool.call("trial", known + i + 1)  # a seed of its own for each trial's sampler
            tick()

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await pool.close()
