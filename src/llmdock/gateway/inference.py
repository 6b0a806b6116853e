"""The inference routes: chat completions, completions, embeddings.

A request body becomes a :class:`RequestContext` (its prompt template resolved, its caller bound, its
structured output planned), runs the one pipeline, and is answered as JSON or as server-sent events.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from llmdock.auth.service import Principal
from llmdock.backends.base import StreamChunk
from llmdock.backends.logprobs import require_logprobs
from llmdock.errors import InvalidRequest, LlmdockError, StoreUnavailable
from llmdock.gateway.deps import RuntimeDep, body_of, principal_of
from llmdock.gateway.experiments import EXPERIMENT_HEADER, SESSION_HEADER, assign_variant
from llmdock.gateway.http import JSONResponse, parse_body, read_body
from llmdock.gateway.responses import completion_body, embedding_body
from llmdock.gateway.schemas import ChatCompletionBody, CompletionBody, EmbeddingBody
from llmdock.gateway.sse import SSEResponse, completion_events
from llmdock.pipeline.context import RequestContext, new_trace_id
from llmdock.pipeline.telemetry import request_cost, token_counts
from llmdock.prompts import PromptCall
from llmdock.runtime import Runtime
from llmdock.structured.plan import route_backends

GenerationBody = ChatCompletionBody | CompletionBody
MODEL_VERSION_HEADER = "x-llmdock-model-version"  # NAME/N when a registered version answered
G = TypeVar("G", ChatCompletionBody, CompletionBody)
# HotRoutes calls these with the runtime it holds: no dependency machinery, no app-state read per request.
Handler = Callable[[Request, Runtime], Awaitable[Response]]


def tenant_namespace(request: Request, principal: Principal | None) -> str:
    """Who is asking, for cache scoping: the key's user; without auth, a hash of the bearer credential."""
    if principal is not None:
        return principal.user_id
    auth = request.headers.get("authorization", "")
    return hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else ""


def bind_principal(
    ctx: RequestContext, principal: Principal | None, user: str | None, runtime: Runtime
) -> None:
    """Check the key may use the model, tag the request with who it is for, and count its spend."""
    ctx.subject = user or ""
    if principal is None:
        return
    runtime.auth.check_model(principal, ctx.model)
    ctx.subject = user or principal.user_id
    ctx.api_key_id, ctx.team_id = principal.key_id, principal.team_id
    if not principal.counted:
        return

    def account(done: RequestContext) -> None:
        prompt, completion = token_counts(done)
        runtime.auth.schedule_account(principal, prompt + completion, request_cost(done, prompt, completion))

    ctx.on_success.append(account)


async def prompt_call(
    runtime: Runtime, principal: Principal | None, body: GenerationBody
) -> PromptCall | None:
    """The prompt template a request names, checked against the key's scope, resolved (cached)."""
    runtime.auth.check_prompt(principal, body.prompt_id)
    if body.prompt_id is None:
        return None
    if runtime.prompts is None:
        raise InvalidRequest("prompt templates need the store (trace.enabled)", param="prompt_id")
    found = await runtime.prompts.resolve(body.prompt_id, body.prompt_version, body.prompt_label)
    return PromptCall(found, body.prompt_variables or {}, body.prompt_label)


def plan_structured(runtime: Runtime, ctx: RequestContext, fields: dict[str, Any]) -> None:
    """Hand response_format / tools to the pipeline's planning stage."""
    planner = runtime.pipeline.planner
    if planner is None:
        raise InvalidRequest(
            "response_format and tools need the 'structured' stage in the pipeline setting",
            param="response_format" if fields["response_format"] else "tools",
        )
    ctx.structured_fields = fields
    planner.plan(ctx)


def check_journal(runtime: Runtime) -> None:
    """Refuse work whose trace could not be kept: the store is away and the journal is full (policy reject)."""
    if runtime.writer is not None and runtime.writer.refusing:
        raise StoreUnavailable(
            "the trace store is unreachable and the trace journal is full (trace.journal_max_mb); "
            "requests are refused until the store is back (trace.journal_full: reject)",
            headers={"Retry-After": "5"},
        )


def session_of(request: Request) -> str:
    """The conversation a request continues (``x-llmdock-session``), for the memory stage."""
    session = request.headers.get(SESSION_HEADER, "").strip()
    if len(session) > 200:
        raise InvalidRequest(f"{SESSION_HEADER}: longer than 200 characters", param=SESSION_HEADER)
    return session


async def build_context(runtime: Runtime, request: Request, body: GenerationBody) -> RequestContext:
    principal = principal_of(request)
    trace_id = new_trace_id()
    assignment = assign_variant(runtime, request, body, principal, trace_id)
    ctx = await context_of(runtime, body, principal, tenant_namespace(request, principal), trace_id)
    if assignment is not None:
        ctx.attributes.update(assignment.attributes())
    ctx.session = session_of(request)
    ctx.cache_control = request.headers.get("cache-control", "").lower() + ctx.cache_control
    return ctx


async def context_of(
    runtime: Runtime,
    body: GenerationBody,
    principal: Principal | None,
    namespace: str,
    trace_id: str | None = None,
) -> RequestContext:
    """The context of a parsed body for ``principal`` (an HTTP request's, or a batch row's)."""
    check_journal(runtime)
    call = None
    model = body.model
    if body.prompt_id is not None or (principal is not None and principal.prompts is not None):
        call = await prompt_call(runtime, principal, body)
        model = model or (call.prompt.config.get("model") if call else None)
    if not model:
        raise InvalidRequest(
            f"model is required: prompt template {body.prompt_id!r} names none", param="model"
        )
    backend = runtime.backend(model)
    ctx = RequestContext(
        body.operation,
        model,
        backend,
        request=body.generation_request(),
        stream=body.stream,
        trace_id=trace_id or new_trace_id(),
    )
    ctx.prompt = call
    ctx.namespace = namespace
    bind_principal(ctx, principal, body.user, runtime)
    fields = body.structured_fields()
    if fields is not None:
        plan_structured(runtime, ctx, fields)
    if ctx.request is not None and ctx.request.logprobs is not None:
        ask_logprobs(ctx)
    return ctx


def ask_logprobs(ctx: RequestContext) -> None:
    """Check every deployment of the model can give log-probabilities; keep the answer out of the cache (a
    cached answer has none)."""
    require_logprobs(ctx.model, route_backends(ctx.backend), "logprobs")
    ctx.cache_control += " no-store"


async def run_whole(runtime: Runtime, ctx: RequestContext) -> None:
    """Run the pipeline to the whole answer, its trace on disk when the journal says so."""
    try:
        await runtime.pipeline.run(ctx)
        if ctx.durable is not None:
            await ctx.durable
    except LlmdockError as exc:  # a refused request has a trace too (guard verdicts, the error)
        await _refused(ctx, exc)
        raise


async def open_stream(
    runtime: Runtime, ctx: RequestContext
) -> tuple[StreamChunk | None, AsyncIterator[StreamChunk]]:
    """Run the stages before generate and wait for the first chunk (None: the stream is empty).

    Until the first chunk the router may still fail over, and if every deployment fails the client gets a
    real HTTP error rather than an error event.
    """
    try:
        chunks = await runtime.pipeline.prepare_stream(ctx)
    except LlmdockError as exc:
        await _refused(ctx, exc)
        raise
    return await anext(chunks, None), chunks


async def _refused(ctx: RequestContext, exc: LlmdockError) -> None:
    exc.headers.setdefault("x-llmdock-trace-id", ctx.trace_id)
    if ctx.durable is not None:
        await ctx.durable


def answer_headers(ctx: RequestContext) -> dict[str, str]:
    headers = {
        "x-llmdock-trace-id": ctx.trace_id,
        "x-llmdock-cache": str(ctx.attributes.get("llmdock.cache", "off")),
    }
    if "llmdock.served_model_version" in ctx.attributes:  # a registered model: which version answered
        headers[MODEL_VERSION_HEADER] = str(ctx.attributes["llmdock.served_model_version"])
    if "llmdock.experiment" in ctx.attributes:
        headers[EXPERIMENT_HEADER] = (
            f"{ctx.attributes['llmdock.experiment']}/{ctx.attributes['llmdock.experiment_variant']}"
        )
    return headers


async def respond(runtime: Runtime, ctx: RequestContext, body: GenerationBody) -> Response:
    """Run the pipeline: the whole answer as JSON, or a stream once its first chunk is there."""
    if not body.stream:
        await run_whole(runtime, ctx)
        return JSONResponse(completion_body(ctx), headers=answer_headers(ctx))
    first, chunks = await open_stream(runtime, ctx)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return SSEResponse(completion_events(ctx, first, chunks, include_usage), headers=answer_headers(ctx))


def generation_handler(body_type: type[G], name: str) -> Handler:
    """The handler of a generation route (chat or text completion): parse, build the context, respond."""

    async def handler(request: Request, runtime: RuntimeDep) -> Response:
        body = parse_body(await read_body(request, runtime.settings.max_body_bytes), body_type)
        return await respond(runtime, await build_context(runtime, request, body), body)

    handler.__name__ = handler.__qualname__ = name
    return handler


chat_completions = generation_handler(ChatCompletionBody, "chat_completions")
completions = generation_handler(CompletionBody, "completions")


async def embeddings(request: Request, runtime: RuntimeDep) -> Response:
    body = await body_of(request, EmbeddingBody, runtime)
    check_journal(runtime)
    backend = runtime.backend(body.model)
    if backend.task != "embedding":
        raise InvalidRequest(f"model {body.model!r} is not an embedding model", param="model")
    ctx = RequestContext("embedding", body.model, backend, inputs=body.texts())
    bind_principal(ctx, principal_of(request), body.user, runtime)
    await runtime.pipeline.run(ctx)
    if ctx.durable is not None:
        await ctx.durable
    return JSONResponse(embedding_body(ctx, body), headers={"x-llmdock-trace-id": ctx.trace_id})
