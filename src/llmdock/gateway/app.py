"""The OpenAI-compatible gateway: chat completions, completions, embeddings, models, health.

Every route runs the one pipeline; errors of every kind become OpenAI-shaped bodies in one handler. The
handlers are module-level functions (``inference``, ``info``, ``admin``) that find the runtime in the app's
state; ``create_app`` only wires them up.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from llmdock import __version__
from llmdock.errors import InvalidRequest, LlmdockError, NotFound
from llmdock.gateway import batches, feedback, inference, info, jobs, metrics, prompts_read, responses_api
from llmdock.gateway.admin import admin_router
from llmdock.gateway.auth import AuthMiddleware
from llmdock.gateway.http import JSONResponse, error_response, unexpected_error_response
from llmdock.gateway.inference import Handler
from llmdock.gateway.openapi import install as install_openapi
from llmdock.gateway.openapi import json_body
from llmdock.gateway.schemas import ChatCompletionBody, CompletionBody, EmbeddingBody
from llmdock.runtime import Runtime
from llmdock.ui import create_ui

log = logging.getLogger("llmdock.gateway")


def quiet_http_client_logs() -> None:
    """httpx logs every request at INFO: one line per proxied call is noise and CPU on the hot path."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def audit_config(runtime: Runtime) -> None:
    """A changed configuration (policies included) is an audited event."""
    import socket

    from llmdock.store.audit import record_config

    assert runtime.store is not None
    try:
        if not runtime.store.migrated:  # another worker may be migrating this store right now
            runtime.store.migrate()
        record_config(runtime.store, runtime.settings, "gateway", socket.gethostname())
    except LlmdockError as exc:
        log.warning("cannot audit the configuration: %s", exc.one_line())
    except SQLAlchemyError as exc:  # e.g. the store is down: serving goes on, the writer keeps traces
        log.warning("cannot audit the configuration: %s", str(exc).splitlines()[0])


async def retention_loop(runtime: Runtime) -> None:
    """Delete traces past their retention period (``retention``: the default and per model/team rules), now and
    every ``retention.interval_s``."""
    from llmdock.store.audit import Actor
    from llmdock.store.retention import purge

    policy, store = runtime.retention, runtime.store
    if not policy.active or store is None:
        return
    while True:
        try:
            deleted = await asyncio.to_thread(purge, store, policy, Actor("retention", "gateway"))
            if deleted:
                log.info("retention: deleted %d traces past their retention period", deleted)
        except Exception as exc:
            log.warning("retention: cannot purge old traces: %s", exc)
        await asyncio.sleep(runtime.settings.retention.interval_s)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    try:
        await runtime.start()
        runtime.start_online_eval()  # sampled scoring of stored traces, in the background (online_eval)
    except LlmdockError as exc:  # e.g. a model file that is not there: one line, not a traceback
        runtime.start_error = exc
        raise
    if runtime.store is not None:
        await asyncio.to_thread(audit_config, runtime)
    retention = asyncio.create_task(retention_loop(runtime)) if runtime.retention.active else None
    # Everything loaded so far (models, libraries, settings) lives as long as the process: keep it out
    # of the cyclic GC's generations, so full collections under load stay short (P99 latency).
    batch_worker = batches.start_worker(runtime)  # the Batch API's batches, off the request path
    scheduler = jobs.start_scheduler(runtime)  # job_scheduler: true fires the stored schedules here
    gc.freeze()
    log.info("llmdock %s ready: models %s", __version__, ", ".join(runtime.backends))
    yield
    if retention is not None:
        retention.cancel()
    if batch_worker is not None:
        batch_worker.cancel()
    if scheduler is not None:  # running pipelines end first
        scheduler[1].set()
        await scheduler[0]
    await runtime.close()


async def _llmdock_error(_: Request, exc: LlmdockError) -> Response:
    return error_response(exc)


async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
    err: LlmdockError = (
        NotFound(str(exc.detail)) if exc.status_code == 404 else InvalidRequest(str(exc.detail))
    )
    return JSONResponse(err.to_body(), status_code=exc.status_code)


async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return error_response(InvalidRequest(f"{field}: {first['msg']}", param=field))


async def _unexpected(_: Request, exc: Exception) -> Response:
    return unexpected_error_response(exc)


INFERENCE_ROUTES: list[tuple[str, Handler, type[Any]]] = [
    ("/v1/chat/completions", inference.chat_completions, ChatCompletionBody),
    ("/v1/completions", inference.completions, CompletionBody),
    ("/v1/embeddings", inference.embeddings, EmbeddingBody),
]
HOT_ROUTES = {"/v1/chat/completions": inference.chat_completions, "/v1/completions": inference.completions}


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="llmdock", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime
    install_openapi(app)
    # The stage that plans response_format / tools before the pipeline runs, if the pipeline has one.
    app.exception_handler(LlmdockError)(_llmdock_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(Exception)(_unexpected)
    for path, handler, body in INFERENCE_ROUTES:
        app.add_api_route(path, handler, methods=["POST"], openapi_extra=json_body(body))
    app.include_router(info.router)
    app.include_router(responses_api.router)
    app.include_router(metrics.router)
    if runtime.settings.metrics.enabled:
        runtime.enable_metrics()
    app.include_router(feedback.router)
    app.include_router(prompts_read.router)
    app.include_router(batches.router)
    # The generation routes skip FastAPI's router and dependency machinery (same handlers, same errors):
    # measured 0.1-0.3 ms of CPU per request under load. The FastAPI routes above stay for the OpenAPI docs.
    app.add_middleware(HotRoutes, handlers=HOT_ROUTES, runtime=runtime)
    app.include_router(admin_router)
    app.mount("/ui", create_ui(runtime))  # the dashboard (llmdock.ui): its own sign-in, pages, errors
    # Added last, so it runs first: nothing (not even the hot routes) is reached without a valid key.
    app.add_middleware(AuthMiddleware, service=runtime.auth)
    return app


class HotRoutes:
    """Answers POST on a few paths directly, in front of the framework's routing.

    It also makes a failed start (an LlmdockError in the lifespan, e.g. a missing model file) reach the
    server's log as its one line instead of a traceback — here, to spare requests one more ASGI layer.
    """

    def __init__(self, app: ASGIApp, handlers: dict[str, Handler], runtime: Runtime) -> None:
        self.app = app
        self.handlers = handlers
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = (
            self.handlers.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if handler is None:
            await self.app(scope, receive, self._clean_startup(send) if scope["type"] == "lifespan" else send)
            return
        try:
            response = await handler(Request(scope, receive), self.runtime)
        except LlmdockError as exc:
            response = error_response(exc)
        except Exception as exc:
            response = unexpected_error_response(exc)
        await response(scope, receive, send)

    def _clean_startup(self, send: Send) -> Send:
        async def clean_send(message: Any) -> None:
            err = self.runtime.start_error
            if message["type"] == "lifespan.startup.failed" and err is not None:
                message = {**message, "message": f"llmdock: error: {err.one_line()}"}
            await send(message)

        return clean_send
