"""The stored side of pipeline runs: a run and its steps as they start and end, a cancel request (another
process sets ``cancelling``; the running process notices it and stops), and the previous outputs a cached step
reuses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from llmdock.errors import Conflict, NotFound
from llmdock.jobs.pipeline_spec import Pipeline
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import JobRun, JobStepRun

FINAL = ("succeeded", "failed", "cancelled")


def start_run(store: Store, pipeline: Pipeline, by: str) -> JobRun:
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


def save_step(store: Store, run_id: str, position: int, **fields: Any) -> None:
    with store.session() as s, s.begin():
        row = s.get(JobStepRun, (run_id, position))
        assert row is not None
        for name, value in fields.items():
            setattr(row, name, value)


def end_run(store: Store, run_id: str, status: str) -> None:
    with store.session() as s, s.begin():
        row = s.get(JobRun, run_id)
        assert row is not None
        row.status, row.finished_at = status, datetime.now(UTC)


def run_status(store: Store, run_id: str) -> str:
    with store.session() as s:
        return s.scalar(select(JobRun.status).where(JobRun.id == run_id)) or ""


def cancel_run(store: Store, ref: str) -> JobRun:
    """Ask a running pipeline to stop (it may run in another process: it polls its row between and during
    steps). A run that has already ended is a Conflict."""
    run, _ = get_run(store, ref)
    with store.session() as s, s.begin():
        row = s.get(JobRun, run.id, with_for_update=True)
        assert row is not None
        if row.status in FINAL:
            raise Conflict(f"run {row.id[:12]} has already {row.status}", param="run")
        row.status = "cancelling"
    return row


def cached_outputs(store: Store, key: str) -> tuple[str, dict[str, Any]] | None:
    """The newest succeeded step with this cache key: its run and outputs."""
    with store.session() as s:
        row = s.execute(
            select(JobStepRun.run_id, JobStepRun.outputs, JobStepRun.cached_from)
            .join(JobRun, JobRun.id == JobStepRun.run_id)
            .where(JobStepRun.cache_key == key, JobStepRun.status.in_(("succeeded", "cached")))
            .order_by(JobRun.created_at.desc())
            .limit(1)
        ).first()
    return (row.cached_from or row.run_id, dict(row.outputs)) if row else None


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
