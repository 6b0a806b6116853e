"""OpenAI's Files and Batch APIs: ``client.files.create(purpose="batch")``, ``client.batches.create(...)``,
``retrieve``, ``list``, ``cancel`` and ``client.files.content(...)`` work unchanged against the gateway.

A batch runs off the request path (``llmdock.jobs.batch_worker``, started with the app), each row through
the same pipeline as ``/v1/chat/completions`` as the key that made the batch. A key sees only its team's
files and batches (its own, without a team); with auth off everything is in one scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from llmdock.auth.service import Principal
from llmdock.errors import InvalidRequest, StoreUnavailable
from llmdock.gateway.batch_rows import BODIES, PipelineRows
from llmdock.gateway.deps import RuntimeDep, body_of, principal_of
from llmdock.gateway.http import JSONResponse
from llmdock.jobs import batch_store as db
from llmdock.jobs.batch_worker import BatchWorker
from llmdock.runtime import Runtime
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import BatchJob

router = APIRouter()
OWNER_FIELDS = ("key_id", "prefix", "user_id", "user", "role", "team_id", "models", "prompts")


class CreateBatchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str = Field(min_length=1)
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = Field(default=None, max_length=16)


def scope_of(principal: Principal | None) -> str:
    if principal is None:
        return ""
    return principal.team_id or f"user:{principal.user_id}"


def owner_of(principal: Principal | None) -> dict[str, Any]:
    """What a batch's rows run as, kept with the batch (the key's scope, not its secret)."""
    if principal is None:
        return {}
    return {k: getattr(principal, k) for k in OWNER_FIELDS} | {"permissions": sorted(principal.permissions)}


def principal_from(owner: dict[str, Any]) -> Principal | None:
    if not owner:
        return None
    fields = {k: owner[k] for k in OWNER_FIELDS}
    return Principal(**fields, permissions=frozenset(owner["permissions"]), expires_at=None)


def store_of(runtime: Runtime) -> Store:
    if runtime.store is None:
        raise StoreUnavailable(
            f"the Batch API needs the store: {runtime.store_error or 'trace.enabled is off'}"
        )
    return runtime.store


@router.post("/v1/files")
async def create_file(request: Request, runtime: RuntimeDep) -> Response:
    """Upload a JSONL file of requests (multipart: ``file`` and ``purpose=batch``)."""
    store = store_of(runtime)
    async with request.form(max_files=1) as form:
        upload, purpose = form.get("file"), form.get("purpose")
        if purpose != "batch":
            raise InvalidRequest(f"purpose must be 'batch', not {purpose!r}", param="purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("file is required (multipart/form-data)", param="file")
        row = await asyncio.to_thread(
            _keep_upload, store, runtime.settings.home, scope_of(principal_of(request)), upload
        )
    return JSONResponse(db.file_object(row))


def _keep_upload(store: Store, home: Path, scope: str, upload: UploadFile) -> Any:
    incoming = Path(home).expanduser() / "batches"
    incoming.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=incoming, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(upload.file, out)
        return db.store_file(store, home, scope, Path(tmp), upload.filename or "upload.jsonl", "batch")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@router.get("/v1/files")
async def list_files(
    request: Request,
    runtime: RuntimeDep,
    purpose: str | None = None,
    after: str | None = None,
    limit: int = 10_000,
    order: Literal["asc", "desc"] = "desc",
) -> Response:
    """The key's files (of ``purpose``), newest first unless ``order=asc``, a page of ``limit`` after ``after``."""
    limit = max(1, min(limit, 10_000))
    rows = await asyncio.to_thread(
        db.list_files,
        store_of(runtime),
        scope_of(principal_of(request)),
        purpose=purpose,
        after=after,
        limit=limit + 1,
        newest_first=order == "desc",
    )
    return JSONResponse(page([db.file_object(r) for r in rows], limit))


def page(objects: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A cursor page as OpenAI's list routes answer it (``objects`` holds one more than ``limit`` if more)."""
    data = objects[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(objects) > limit,
    }


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """Forget a file and its content (refused while a running batch reads it)."""
    scope = scope_of(principal_of(request))
    await asyncio.to_thread(db.delete_file, store_of(runtime), runtime.settings.home, scope, file_id)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})


@router.get("/v1/files/{file_id}")
async def retrieve_file(file_id: str, request: Request, runtime: RuntimeDep) -> Response:
    row = await asyncio.to_thread(db.get_file, store_of(runtime), scope_of(principal_of(request)), file_id)
    return JSONResponse(db.file_object(row))


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, request: Request, runtime: RuntimeDep) -> Response:
    row = await asyncio.to_thread(db.get_file, store_of(runtime), scope_of(principal_of(request)), file_id)
    return FileResponse(db.file_path(runtime.settings.home, row), media_type="application/jsonl")


@router.post("/v1/batches")
async def create_batch(request: Request, runtime: RuntimeDep) -> Response:
    body = await body_of(request, CreateBatchBody, runtime)
    if body.endpoint not in BODIES:
        raise InvalidRequest(f"endpoint must be one of {', '.join(BODIES)}", param="endpoint")
    window = db.window_seconds(body.completion_window)
    store, principal = store_of(runtime), principal_of(request)
    source = await asyncio.to_thread(db.get_file, store, scope_of(principal), body.input_file_id)
    if source.purpose != "batch":
        raise InvalidRequest(f"file {source.id} was not uploaded with purpose 'batch'", param="input_file_id")
    row = BatchJob(
        id=db.new_id("batch"),
        scope=scope_of(principal),
        owner=owner_of(principal),
        endpoint=body.endpoint,
        input_file_id=source.id,
        completion_window=body.completion_window,
        status="validating",
        metadata_=body.metadata,
        total=0,
        completed=0,
        failed=0,
        errors="",
        times={"expires": int(datetime.now(UTC).timestamp()) + window},
        created_at=datetime.now(UTC),
        lease_owner="",
    )
    await asyncio.to_thread(db.add_batch, store, row)
    return JSONResponse(db.batch_object(row))


@router.get("/v1/batches/{batch_id}")
async def retrieve_batch(batch_id: str, request: Request, runtime: RuntimeDep) -> Response:
    row = await asyncio.to_thread(db.get_batch, store_of(runtime), scope_of(principal_of(request)), batch_id)
    return JSONResponse(db.batch_object(row))


@router.get("/v1/batches")
async def list_batches(
    request: Request, runtime: RuntimeDep, after: str | None = None, limit: int = 20
) -> Response:
    limit = max(1, min(limit, 100))
    rows = await asyncio.to_thread(
        db.list_batches, store_of(runtime), scope_of(principal_of(request)), after, limit + 1
    )
    return JSONResponse(page([db.batch_object(r) for r in rows], limit))


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, request: Request, runtime: RuntimeDep) -> Response:
    row = await asyncio.to_thread(
        db.request_cancel, store_of(runtime), scope_of(principal_of(request)), batch_id
    )
    return JSONResponse(db.batch_object(row))


def start_worker(runtime: Runtime) -> asyncio.Task[None] | None:
    """Run the store's batches in this process, off the request path (None without a store)."""
    if runtime.store is None:
        return None

    def rows_for(owner: dict[str, Any]) -> PipelineRows:
        return PipelineRows(runtime, principal_from(owner))

    cfg = runtime.settings.batch
    worker = BatchWorker(
        runtime.store, runtime.settings.home, rows_for, lease_s=cfg.lease_s, concurrency=cfg.concurrency
    )
    return asyncio.create_task(worker.run_forever())
