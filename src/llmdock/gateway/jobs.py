"""The schedules fired inside the gateway (``job_scheduler: true``; off by default): the same loop as
``llmdock jobs scheduler`` (``llmdock.jobs.schedules``), its pipelines run on this process's runtime. Every
worker of every gateway may run it: each slot is claimed in the store, so it runs once."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import datetime
from pathlib import Path

from llmdock.gateway.batch_rows import PipelineRows
from llmdock.jobs.pipeline_run import RunOptions, run_pipeline
from llmdock.jobs.pipeline_spec import load_pipeline
from llmdock.jobs.schedules import scheduler_loop
from llmdock.jobs.steps import Services
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from llmdock.store.jobs_rows import JobSchedule


def start_scheduler(runtime: Runtime) -> tuple[asyncio.Task[None], asyncio.Event] | None:
    """The scheduler task and the event that stops it (None when off or without a store)."""
    store = runtime.store
    if not runtime.settings.job_scheduler or store is None:
        return None
    owner = f"{socket.gethostname()}:{os.getpid()}"
    plugins = runtime.plugins
    services = Services(
        runtime.settings,
        store,
        Actor("scheduler", owner),
        lambda: runtime,
        plugins.metrics,
        plugins.dataset_steps,
    )

    async def fire(row: JobSchedule, slot: datetime) -> tuple[str, str]:
        pipeline = await asyncio.to_thread(load_pipeline, Path(row.path), plugins.job_steps, dict(row.params))
        options = RunOptions(by=f"schedule {row.id[:12]}", services=services)
        run = await run_pipeline(
            pipeline, plugins.job_steps, store, lambda: PipelineRows(runtime), options=options
        )
        return run.id, run.status

    stop = asyncio.Event()
    return asyncio.create_task(scheduler_loop(store, fire, owner=owner, stop=stop)), stop
