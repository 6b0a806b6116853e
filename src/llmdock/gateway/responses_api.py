"""``/v1/responses``: OpenAI's Responses API over the chat completions pipeline.

``POST /v1/responses`` becomes a chat request (:mod:`llmdock.gateway.responses_translate`) and runs through
the same context building (the key's model scope, budgets, structured-output planning) and the same
pipeline as ``/v1/chat/completions``; one trace per response, whose id is the response's. Answers are
kept (``store``, true by default) for ``GET``/``DELETE /v1/responses/{id}``, ``input_items`` and
``previous_response_id``: scoped to the key's team, their texts redacted per ``privacy.pii`` and sealed
with ``privacy.encrypt_bodies`` as traces are. The client's own answer is never changed by redaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import InvalidRequest, LlmdockError, ValidationError
from llmdock.gateway.deps import RuntimeDep, principal_of
from llmdock.gateway.http import JSONResponse, parse_body, read_body
from llmdock.gateway.inference import answer_headers, build_context, open_stream, run_whole
from llmdock.gateway.openapi import json_body
from llmdock.gateway.responses_schemas import ResponsesBody
from llmdock.gateway.responses_stream import response_events
from llmdock.gateway.responses_translate import (
    ResponseDraft,
    chat_body,
    final_status,
    input_with_ids,
    output_items,
    response_id,
    responses_error,
    responses_usage,
)
from llmdock.gateway.sse import SSEResponse
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.telemetry import token_counts
from llmdock.privacy.gdpr import subject_pseudonym
from llmdock.runtime import Runtime
from llmdock.store.engine import Store
from llmdock.store.models import StoredResponse
from llmdock.store.responses import (
    delete_response,
    load_response,
    not_found,
    save_response,
    seal_data,
)

router = APIRouter()


def team_of(request: Request) -> str:
    principal = principal_of(request)
    return principal.team_id if principal is not None else ""


def store_for(runtime: Runtime, body: ResponsesBody) -> Store | None:
    """Where this response is kept: None when ``store`` is false, or left out and there is no store."""
    if body.store is False or (body.store is None and runtime.store is None):
        return None
    if runtime.store is None:
        raise InvalidRequest("store: true needs a store, and this runtime has none", param="store")
    return runtime.store


async def earlier_items(runtime: Runtime, body: ResponsesBody, team: str) -> list[dict[str, Any]]:
    """The conversation ``previous_response_id`` names: its items and its answer (the team's own only)."""
    previous = body.previous_response_id
    if previous is None:
        return []
    if runtime.store is None:
        raise not_found(previous, "previous_response_id")
    data = await asyncio.to_thread(load_response, runtime.store, previous, team, "previous_response_id")
    return [*data["conversation"], *data["response"]["output"]]


def redacted(runtime: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its texts (messages, arguments, tool outputs, instructions) redacted per privacy.pii;
    ids, types and names are kept, so the stored conversation can still be continued."""
    privacy = runtime.privacy
    if privacy.engine is None:
        return data
    slots: list[tuple[dict[str, Any], str]] = []
    items = [*data["conversation"], *data["response"]["output"]]
    for item in items:
        content = item.get("content")
        if isinstance(content, str):
            slots.append((item, "content"))
        for part in content if isinstance(content, list) else []:
            slots.append((part, "text"))
        slots += [(item, key) for key in ("arguments", "output") if isinstance(item.get(key), str)]
    if data["response"].get("instructions"):
        slots.append((data["response"], "instructions"))
    metadata = data["response"].get("metadata") or {}
    slots += [(metadata, key) for key in metadata]
    for (holder, key), text in zip(slots, privacy.redact_json([h[k] for h, k in slots]), strict=True):
        holder[key] = text
    return data


def keep(
    runtime: Runtime, store: Store, ctx: RequestContext, body: ResponsesBody, earlier: list[dict[str, Any]]
) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """The coroutine function that stores a finished response (redacted and sealed, off the event loop)."""

    def write(final: dict[str, Any]) -> None:
        own = input_with_ids(body.input_items(), ctx.trace_id)
        data = redacted(
            runtime, {"response": final, "conversation": [*earlier, *own], "earlier": len(earlier)}
        )
        privacy = runtime.privacy
        if privacy.encrypt_bodies and privacy.keyring is not None:
            data = seal_data(privacy.keyring, final["id"], data)
        subject = ctx.subject
        if privacy.engine is not None and subject and privacy.subject_key:
            subject = subject_pseudonym(privacy.subject_key, subject)
        row = StoredResponse(
            id=final["id"],
            created_at=datetime.fromtimestamp(final["created_at"], UTC),
            team_id=ctx.team_id,
            api_key_id=ctx.api_key_id,
            subject=subject,
            model=ctx.model,
            previous_response_id=body.previous_response_id or "",
            data=data,
        )
        save_response(store, row)

    async def on_complete(final: dict[str, Any]) -> None:
        # A copy: redaction works in place, and the client gets the answer as it was given.
        await asyncio.to_thread(write, orjson_copy(final))

    return on_complete


def orjson_copy(value: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = orjson.loads(orjson.dumps(value))
    return copied


def parse_responses_body(raw: bytes) -> ResponsesBody:
    """The body, its errors answered 400 (as OpenAI's Responses API does) naming the field."""
    try:
        return parse_body(raw, ResponsesBody)
    except ValidationError as exc:
        raise InvalidRequest(exc.message, param=exc.param) from None


async def create_response(request: Request, runtime: RuntimeDep) -> Response:
    body = parse_responses_body(await read_body(request, runtime.settings.max_body_bytes))
    store = store_for(runtime, body)
    earlier = await earlier_items(runtime, body, team_of(request))
    try:
        ctx = await build_context(runtime, request, chat_body(body, earlier))
    except LlmdockError as exc:
        raise responses_error(exc) from None
    ctx.attributes["llmdock.api"] = "responses"
    draft = ResponseDraft(body, response_id(ctx.trace_id), store is not None)

    async def not_kept(final: dict[str, Any]) -> None:
        return None

    on_complete = keep(runtime, store, ctx, body, earlier) if store is not None else not_kept
    if body.stream:
        try:
            first, chunks = await open_stream(runtime, ctx)
        except LlmdockError as exc:
            raise responses_error(exc) from None
        events = response_events(ctx, draft, first, chunks, on_complete)
        return SSEResponse(events, headers=answer_headers(ctx))
    try:
        await run_whole(runtime, ctx)
    except LlmdockError as exc:
        raise responses_error(exc) from None
    gen = ctx.generation
    assert gen is not None
    final = draft.render(
        final_status(gen.finish_reason),
        output_items(gen, ctx.trace_id),
        responses_usage(*token_counts(ctx)),
    )
    await on_complete(final)
    return JSONResponse(final, headers=answer_headers(ctx))


def stored(runtime: Runtime, request: Request, response_id: str) -> dict[str, Any]:
    if runtime.store is None:
        raise not_found(response_id)
    return load_response(runtime.store, response_id, team_of(request))


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request, runtime: RuntimeDep) -> Response:
    """A stored response, as it was answered (its texts as the privacy policy stored them)."""
    data = await asyncio.to_thread(stored, runtime, request, response_id)
    return JSONResponse(data["response"])


@router.delete("/v1/responses/{response_id}")
async def remove_response(response_id: str, request: Request, runtime: RuntimeDep) -> Response:
    if runtime.store is None:
        raise not_found(response_id)
    await asyncio.to_thread(delete_response, runtime.store, response_id, team_of(request))
    return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(
    response_id: str,
    request: Request,
    runtime: RuntimeDep,
    order: Literal["asc", "desc"] = "desc",
    limit: int = Query(default=20, ge=1, le=100),
    after: str | None = None,
) -> Response:
    """The items a response was given (its own input, not the conversation it continued), pages by id."""
    data = await asyncio.to_thread(stored, runtime, request, response_id)
    items: list[dict[str, Any]] = data["conversation"][data["earlier"] :]
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return JSONResponse(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


router.add_api_route(
    "/v1/responses", create_response, methods=["POST"], openapi_extra=json_body(ResponsesBody)
)
