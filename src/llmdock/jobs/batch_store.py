"""Files and batches of the OpenAI Batch API, as rows in the store, and the lease that gives a batch to one
worker.

A file's content is stored content-addressed under the llmdock home (``registry.artifacts``: hashed while
copied, flushed, renamed into place); its row names it. Every read is scoped: a file or batch of another
scope (team) is "not found", exactly as one that never existed.

The lease: a worker takes a batch by one conditional UPDATE (the batch is runnable and nobody's lease is
current), so of several gateway workers polling one store exactly one wins it; the winner renews the lease
while it runs; a worker that dies stops renewing, and once the lease has lapsed (``batch.lease_s``) another
takes the batch over and resumes it from its progress journal.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select, tuple_, update

from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.registry.artifacts import artifact_path, put
from llmdock.store.dataset_rows import DatasetVersion
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import BatchFile, BatchJob
from llmdock.store.models import ModelVersion

RUNNABLE = ("validating", "in_progress", "finalizing", "cancelling")
WINDOW_RE = re.compile(r"^([1-9][0-9]*)([smh])$")
MAX_WINDOW_S = 7 * 24 * 3600


def window_seconds(window: str) -> int:
    """``completion_window`` (``24h``, as OpenAI takes it; also ``30m``, ``90s``… up to a week) in seconds."""
    m = WINDOW_RE.match(window)
    seconds = int(m[1]) * {"s": 1, "m": 60, "h": 3600}[m[2]] if m else 0
    if not 0 < seconds <= MAX_WINDOW_S:
        raise InvalidRequest(
            f"completion_window {window!r}: a duration such as 24h, 30m or 90s, at most 168h",
            param="completion_window",
        )
    return seconds


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}" if prefix == "file" else f"{prefix}_{secrets.token_hex(12)}"


def file_object(row: BatchFile) -> dict[str, Any]:
    """A file as OpenAI's API shows it."""
    return {
        "id": row.id,
        "object": "file",
        "bytes": row.bytes,
        "created_at": int(row.created_at.timestamp()),
        "filename": row.filename,
        "purpose": row.purpose,
        "status": "processed",
    }


def batch_object(row: BatchJob) -> dict[str, Any]:
    """A batch as OpenAI's API shows it."""
    times = row.times or {}
    return {
        "id": row.id,
        "object": "batch",
        "endpoint": row.endpoint,
        "errors": {"object": "list", "data": [{"code": "invalid_batch", "message": row.errors}]}
        if row.errors
        else None,
        "input_file_id": row.input_file_id,
        "completion_window": row.completion_window,
        "status": row.status,
        "output_file_id": row.output_file_id,
        "error_file_id": row.error_file_id,
        "created_at": int(row.created_at.timestamp()),
        **{
            f"{k}_at": times.get(k)
            for k in (
                "in_progress",
                "expires",
                "finalizing",
                "completed",
                "failed",
                "expired",
                "cancelling",
                "cancelled",
            )
        },  # fmt: skip
        "request_counts": {"total": row.total, "completed": row.completed, "failed": row.failed},
        "metadata": row.metadata_,
    }


def store_file(store: Store, home: Path, scope: str, source: Path, filename: str, purpose: str) -> BatchFile:
    """Keep ``source``'s content (content-addressed) and its row; returns the row."""
    sha, size = put(home, source, progress=False)
    row = BatchFile(
        id=new_id("file"),
        scope=scope,
        purpose=purpose,
        filename=filename,
        bytes=size,
        sha256=sha,
        created_at=datetime.now(UTC),
    )
    with store.session() as s, s.begin():
        s.add(row)
    return row


def get_file(store: Store, scope: str, file_id: str) -> BatchFile:
    with store.session() as s:
        row = s.scalar(select(BatchFile).where(BatchFile.id == file_id, BatchFile.scope == scope))
    if row is None:
        raise NotFound(f"No such File object: {file_id}", param="file_id")
    return row


def list_files(
    store: Store, scope: str, *, purpose: str | None, after: str | None, limit: int, newest_first: bool
) -> list[BatchFile]:
    """The scope's files (of ``purpose``), by creation time, those after the file ``after`` (the cursor)."""
    query = select(BatchFile).where(BatchFile.scope == scope)
    if purpose:
        query = query.where(BatchFile.purpose == purpose)
    key = (BatchFile.created_at, BatchFile.id)
    if after:
        cursor = get_file(store, scope, after)
        if newest_first:
            query = query.where(tuple_(*key) < tuple_(cursor.created_at, cursor.id))
        else:
            query = query.where(tuple_(*key) > tuple_(cursor.created_at, cursor.id))
    order = [k.desc() if newest_first else k.asc() for k in key]
    with store.session() as s:
        return list(s.scalars(query.order_by(*order).limit(limit)))


def delete_file(store: Store, home: Path, scope: str, file_id: str) -> None:
    """Forget a file; its content goes too unless another file, a model version or a dataset version shares
    it (content-addressed: one copy for all)."""
    row = get_file(store, scope, file_id)
    with store.session() as s, s.begin():
        running = select(BatchJob.id).where(BatchJob.input_file_id == row.id, BatchJob.status.in_(RUNNABLE))
        if (batch_id := s.scalar(running.limit(1))) is not None:
            raise Conflict(f"file {row.id} is the input of {batch_id}, still running", param="file_id")
        s.execute(delete(BatchFile).where(BatchFile.id == row.id))
        shared = [
            select(BatchFile.id).where(BatchFile.sha256 == row.sha256),
            select(ModelVersion.name).where(ModelVersion.artifact == row.sha256),
            select(DatasetVersion.name).where(DatasetVersion.digest == row.sha256),
        ]
        if any(s.execute(q.limit(1)).first() for q in shared):
            return
    file_path(home, row).unlink(missing_ok=True)


def file_path(home: Path, row: BatchFile) -> Path:
    return artifact_path(home, row.sha256)


def add_batch(store: Store, row: BatchJob) -> None:
    with store.session() as s, s.begin():
        s.add(row)


def get_batch(store: Store, scope: str | None, batch_id: str) -> BatchJob:
    """The batch (None for ``scope``: any, as the worker reads it)."""
    query = select(BatchJob).where(BatchJob.id == batch_id)
    if scope is not None:
        query = query.where(BatchJob.scope == scope)
    with store.session() as s:
        row = s.scalar(query)
    if row is None:
        raise NotFound(f"No such Batch object: {batch_id}", param="batch_id")
    return row


def list_batches(store: Store, scope: str, after: str | None, limit: int) -> list[BatchJob]:
    """The scope's batches, newest first, those after the batch ``after`` (the SDK's cursor)."""
    query = select(BatchJob).where(BatchJob.scope == scope)
    if after:
        cursor = get_batch(store, scope, after)
        query = query.where(BatchJob.created_at < cursor.created_at)
    with store.session() as s:
        return list(s.scalars(query.order_by(BatchJob.created_at.desc()).limit(limit)))


def set_state(store: Store, batch_id: str, status: str, **fields: Any) -> None:
    """Move a batch to ``status`` (stamping ``<status>_at``) and set ``fields``."""
    with store.session() as s, s.begin():
        row = s.get(BatchJob, batch_id)
        assert row is not None
        row.status = status
        row.times = {**(row.times or {}), status: int(time.time())}
        for name, value in fields.items():
            setattr(row, name, value)


def request_cancel(store: Store, scope: str, batch_id: str) -> BatchJob:
    """Ask a batch to stop: its worker stops taking rows and writes what was done (``cancelled``)."""
    row = get_batch(store, scope, batch_id)
    if row.status in ("validating", "in_progress"):
        set_state(store, batch_id, "cancelling")
    return get_batch(store, scope, batch_id)


def claim(store: Store, worker: str, seconds: float) -> BatchJob | None:
    """Take the oldest runnable batch whose lease is free or lapsed, for ``seconds``; None if there is none."""
    now = datetime.now(UTC)
    with store.session() as s:
        candidates = list(
            s.scalars(
                select(BatchJob.id)
                .where(BatchJob.status.in_(RUNNABLE))
                .where(or_(BatchJob.lease_until.is_(None), BatchJob.lease_until < now))
                .order_by(BatchJob.created_at)
                .limit(5)
            )
        )
    for batch_id in candidates:
        if renew(store, batch_id, worker, seconds, take=True):
            return get_batch(store, None, batch_id)
    return None


def renew(store: Store, batch_id: str, worker: str, seconds: float, *, take: bool = False) -> bool:
    """Extend ``worker``'s lease by ``seconds`` from now (or take a free or lapsed one); False when another
    worker holds it."""
    now = datetime.now(UTC)
    held = BatchJob.lease_owner == worker
    if take:
        held = or_(BatchJob.lease_until.is_(None), BatchJob.lease_until < now)
    with store.engine.begin() as conn:
        won = conn.execute(
            update(BatchJob)
            .where(BatchJob.id == batch_id, held)
            .values(lease_owner=worker, lease_until=now + timedelta(seconds=seconds))
        ).rowcount
    return bool(won)


def release(store: Store, batch_id: str, worker: str) -> None:
    """Give the lease back (a worker shutting down), so another worker takes the batch without waiting."""
    with store.engine.begin() as conn:
        conn.execute(
            update(BatchJob)
            .where(BatchJob.id == batch_id, BatchJob.lease_owner == worker)
            .values(lease_owner="", lease_until=None)
        )
