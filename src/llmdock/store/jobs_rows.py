"""Rows of offline work (issue 22): files uploaded for (and written by) batches, the batches themselves, and
the runs of pipeline YAMLs with their steps.

A file's content is not in the store: it lives content-addressed under the llmdock home
(``llmdock.jobs.blobs``), and its row names it by ``sha256``. A batch holds its state as OpenAI's Batch API
reports it, who made it (``scope``: the team, so a key sees only its team's files and batches; ``owner``:
what its rows run as), and a lease: the one gateway worker running it and until when that claim holds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base


class BatchFile(Base):
    __tablename__ = "batch_files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()


class BatchJob(Base):
    __tablename__ = "batch_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[dict[str, Any]] = mapped_column()
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", nullable=True)
    output_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[str] = mapped_column(Text, default="")
    times: Mapped[dict[str, Any]] = mapped_column()  # in_progress_at, completed_at… as Unix seconds
    created_at: Mapped[datetime] = mapped_column(index=True)
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)


class JobRun(Base):
    """One run of a pipeline YAML (``llmdock jobs run``): its parameters, status and times."""

    __tablename__ = "job_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column()
    status: Mapped[str] = mapped_column(String(16))  # running, cancelling, succeeded, failed, cancelled
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # the runner holding the run (host:pid) and until when: renewed by its heartbeat; once past, the run is
    # ``failed`` with ``error`` "runner lost", and ``llmdock jobs resume`` may take it over
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")


class JobStepRun(Base):
    """One step of a run: what it was given (references resolved), what it produced, its log and duration."""

    __tablename__ = "job_steps"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("job_runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    step_id: Mapped[str] = mapped_column(String(64))
    uses: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending, running, succeeded, failed, skipped
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    log: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # sha256 of (uses, step version, llmdock version, resolved inputs, input files' contents): an equal key
    # on a succeeded step lets a later run reuse its outputs (status ``cached``, ``cached_from`` its run)
    cache_key: Mapped[str] = mapped_column(String(64), default="", index=True)
    cached_from: Mapped[str] = mapped_column(String(32), default="")


class JobSchedule(Base):
    """A pipeline YAML run on a cron expression in a time zone (``llmdock jobs schedule``)."""

    __tablename__ = "job_schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column()
    cron: Mapped[str] = mapped_column(String(120))
    tz: Mapped[str] = mapped_column(String(64))
    misfire: Mapped[str] = mapped_column(String(16))  # skip or run_once
    grace_s: Mapped[float] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column()


class JobScheduleFire(Base):
    """One slot of a schedule, claimed by the first runner to insert it (the primary key is the lock: a second
    gateway or scheduler inserting the same slot fails and does not run it). ``status``: ``started`` (its
    run is ``run_id``) or ``missed`` (past its grace time, skipped by the misfire policy)."""

    __tablename__ = "job_schedule_fires"

    schedule_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("job_schedules.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[datetime] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str] = mapped_column(String(32), default="")
    claimed_by: Mapped[str] = mapped_column(String(64))
    claimed_at: Mapped[datetime] = mapped_column()
