"""``POST /v1/feedback``: a score, comment or correction on a trace the caller's team made.

The key needs the ``inference`` or ``observe`` permission (the auth middleware lets it through as ``read``);
an admin key may score any team's traces, any other key only its own team's — another team's trace is
answered 404 exactly like an unknown one. A trace answered moments ago may still be on its way to the store
(the trace writer batches), so an unknown id is looked up again for ``PENDING_TRACE_WAIT_S`` before the 404.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import Forbidden, InvalidRequest, NotFound
from llmdock.feedback import FeedbackBook, Scope, check_feedback
from llmdock.feedback.scores import FeedbackIn
from llmdock.gateway.deps import RuntimeDep, actor_of, principal_of
from llmdock.gateway.http import JSONResponse, read_body
from llmdock.gateway.openapi import json_body

PENDING_TRACE_WAIT_S = 2.0
router = APIRouter()


def scope_of(request: Request) -> Scope:
    """Whose traces the caller may score: every team's (admin, or auth off), else its own team's."""
    principal = principal_of(request)
    if principal is None or "admin" in principal.permissions:
        return Scope(None)
    if not principal.permissions & {"inference", "observe"}:
        raise Forbidden(f"role {principal.role!r} may not give feedback (it needs inference or observe)")
    return Scope(principal.team_id)


@router.post("/v1/feedback", openapi_extra=json_body(FeedbackIn), status_code=201)
async def post_feedback(request: Request, runtime: RuntimeDep) -> Response:
    scope = scope_of(request)
    try:
        data = orjson.loads(await read_body(request, runtime.settings.max_body_bytes))
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    item = check_feedback(data)
    if runtime.store is None:
        raise InvalidRequest("feedback needs the store (trace.enabled)", param="trace_id")
    book = FeedbackBook(runtime.store, runtime.privacy)
    deadline = time.monotonic() + PENDING_TRACE_WAIT_S
    while True:
        try:
            stored = await asyncio.to_thread(book.add, item, actor_of(request), scope)
            return JSONResponse(stored, status_code=201)
        except NotFound:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.1)
