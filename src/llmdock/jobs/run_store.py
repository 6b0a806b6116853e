"""The stored side of pipeline runs: a run and its steps as they start and end, a cancel request (another
process sets ``cancelling``; the running process notices it and stops), the previous outputs a cached step
reuses, and the lease that says a run's runner is alive.

The lease: a runner holds its run (``lease_owner`` host:pid) until ``lease_until``, renewed by its heartbeat
every third of ``LEASE_S``. A runner killed (``kill -9``, a lost machine) stops renewing; once the lease has
run out, :func:`reap_lost` (called by ``jobs list/show/logs/resume`` and the scheduler) stores the run as
``failed`` with ``runner lost`` and its running step too, and ``llmdock jobs resume`` may take it over
(:func:`claim_for_resume`): its finished steps are kept, the rest run again."""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from llmdock.errors import Conflict, NotFound
from llmdock.jobs.pipeline_spec import Pipeline
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import JobRun, JobStepRun
from llmdock.store.lease import Lease

FINAL = ("succeeded", "failed", "cancelled")
LIVE = ("running", "cancelling")
LEASE_S = 30.0
KEPT = ("succeeded", "cached")  # a resumed run keeps these steps' outputs
LEASE = Lease(JobRun, JobRun.lease_owner, JobRun.lease_until)


def runner_name() -> str:
    """Who holds a lease: this host and process."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}"


def _until(lease_s: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=lease_s)


def start_run(store: Store, pipeline: Pipeline, by: str, lease_s: float = LEASE_S) -> JobRun:
    run = JobRun(
        id=secrets.token_hex(16),
        name=pipeline.name,
        path=str(pipeline.path),
        params=dict(pipeline.params),
        status="running",
        created_by=by,
        created_at=datetime.now(UTC),
        lease_owner=runner_name(),
        lease_until=_until(lease_s),
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
        row.lease_until = None


def renew(store: Store, run_id: str, lease_s: float = LEASE_S) -> bool:
    """The heartbeat: extend this runner's lease; False when the run is no longer this runner's (reaped as
    lost after a stall longer than the lease, or taken over by a resume)."""
    with store.session() as s, s.begin():
        return LEASE.renew(s, [JobRun.id == run_id, JobRun.status.in_(LIVE)], runner_name(), lease_s)


def reap_lost(store: Store) -> list[str]:
    """Store every live run whose lease has run out as ``failed: runner lost`` (and its unfinished steps);
    returns their ids."""
    now = datetime.now(UTC)
    with store.session() as s, s.begin():
        lost = list(
            s.scalars(
                select(JobRun).where(JobRun.status.in_(LIVE), JobRun.lease_until < now).with_for_update()
            )
        )
        for run in lost:
            why = f"runner lost: {run.lease_owner} stopped renewing its lease (last until {run.lease_until:%H:%M:%S} UTC)"
            run.status, run.error, run.finished_at = "failed", why, now
            for step in s.scalars(select(JobStepRun).where(JobStepRun.run_id == run.id)):
                if step.status == "running":
                    step.status, step.error = "failed", "runner lost"
    return [run.id for run in lost]


def claim_for_resume(store: Store, ref: str, lease_s: float = LEASE_S) -> tuple[JobRun, list[JobStepRun]]:
    """Take over a failed or cancelled run (a lost one once its lease ran out): it is ``running`` again under
    this runner's lease, its steps not kept reset to ``pending``. Conflict when it is live or succeeded."""
    reap_lost(store)
    run, _ = get_run(store, ref)
    with store.session() as s, s.begin():
        row = s.get(JobRun, run.id, with_for_update=True)
        assert row is not None
        if row.status in LIVE:
            raise Conflict(
                f"run {row.id[:12]} is {row.status}, held by {row.lease_owner} until "
                f"{row.lease_until:%H:%M:%S} UTC: it may only be resumed once that runner is gone",
                param="run",
            )
        if row.status == "succeeded":
            raise Conflict(f"run {row.id[:12]} has already succeeded: nothing to resume", param="run")
        row.status, row.error, row.finished_at = "running", "", None
        row.lease_owner, row.lease_until = runner_name(), _until(lease_s)
        for step in s.scalars(select(JobStepRun).where(JobStepRun.run_id == row.id)):
            if step.status not in KEPT:
                step.status, step.error = "pending", ""
    return get_run(store, run.id)


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
