"""Running a checked pipeline: its steps in order, each given its ``with`` block with references resolved, each
stored (status, inputs, outputs, log, duration) as it starts and ends. A failed step fails the run; the steps
after it are stored as ``skipped``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import func, select

from llmdock.errors import LlmdockError, NotFound
from llmdock.jobs.batch import RowAnswerer
from llmdock.jobs.pipeline_spec import Pipeline, resolve
from llmdock.jobs.steps import StepContext, StepFactory
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import JobRun, JobStepRun


def _start_run(store: Store, pipeline: Pipeline, by: str) -> JobRun:
    run = JobRun(
        id=secrets.token_hex(16),
        name=pipeline.name,
        path=str(pipeline.path),
        params=dict(pipeline.params),
        status="running",
        created_by=by,
        created_at=datetime.now(UTC),
    )
    with store.session() as s, s.begin():
        s.add(run)
        for i, step in enumerate(pipeline.steps):
            s.add(JobStepRun(run_id=run.id, position=i, step_id=step.id, uses=step.uses, status="pending"))
    return run


def _save_step(store: Store, run_id: str, position: int, **fields: Any) -> None:
    with store.session() as s, s.begin():
        row = s.get(JobStepRun, (run_id, position))
        assert row is not None
        for name, value in fields.items():
            setattr(row, name, value)


def _end_run(store: Store, run_id: str, status: str) -> None:
    with store.session() as s, s.begin():
        row = s.get(JobRun, run_id)
        assert row is not None
        row.status, row.finished_at = status, datetime.now(UTC)


async def run_pipeline(
    pipeline: Pipeline,
    steps: dict[str, StepFactory],
    store: Store,
    rows: Callable[[], RowAnswerer],
    *,
    by: str = "",
    report: Callable[[str, str, str], None] = lambda step, status, detail: None,
) -> JobRun:
    """Run every step in order, storing each; returns the run (``succeeded`` or ``failed``)."""
    run = await asyncio.to_thread(_start_run, store, pipeline, by)
    outputs: dict[str, dict[str, Any]] = {}
    status = "succeeded"
    for i, spec in enumerate(pipeline.steps):
        if status == "failed":
            await asyncio.to_thread(_save_step, store, run.id, i, status="skipped")
            report(spec.id, "skipped", "")
            continue
        ctx = StepContext(folder=pipeline.path.parent, rows=rows)
        inputs = resolve(spec.with_, pipeline.params, outputs)
        await asyncio.to_thread(_save_step, store, run.id, i, status="running", inputs=inputs)
        report(spec.id, "running", spec.uses)
        t0 = time.perf_counter()
        step = steps[spec.uses]
        fields: dict[str, Any] = {}
        try:
            produced = await step().run(step.Params.model_validate(inputs), ctx)
            outputs[spec.id] = produced
            fields = {"status": "succeeded", "outputs": produced}
        except PydanticValidationError as exc:
            first = exc.errors()[0]
            fields = {"status": "failed", "error": f"with.{'.'.join(map(str, first['loc']))}: {first['msg']}"}
        except LlmdockError as exc:
            fields = {"status": "failed", "error": exc.one_line()}
        fields.update(log="\n".join(ctx.lines), duration_ms=(time.perf_counter() - t0) * 1000)
        await asyncio.to_thread(_save_step, store, run.id, i, **fields)
        report(spec.id, fields["status"], fields.get("error", ""))
        if fields["status"] == "failed":
            status = "failed"
    await asyncio.to_thread(_end_run, store, run.id, status)
    run.status = status
    return run


def list_runs(store: Store, limit: int) -> list[JobRun]:
    with store.session() as s:
        return list(s.scalars(select(JobRun).order_by(JobRun.created_at.desc()).limit(limit)))


def get_run(store: Store, ref: str) -> tuple[JobRun, list[JobStepRun]]:
    """A run by its id or a unique prefix of it, with its steps in order."""
    with store.session() as s:
        found = list(s.scalars(select(JobRun).where(JobRun.id.startswith(ref, autoescape=True)).limit(2)))
        if len(found) != 1:
            n = s.scalar(
                select(func.count()).select_from(JobRun).where(JobRun.id.startswith(ref, autoescape=True))
            )
            raise NotFound(f"no run {ref!r}" if not n else f"{ref!r} names {n} runs: give more of the id")
        steps = list(
            s.scalars(
                select(JobStepRun).where(JobStepRun.run_id == found[0].id).order_by(JobStepRun.position)
            )
        )
    return found[0], steps
