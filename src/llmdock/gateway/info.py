"""The routes that describe the gateway: models, deployments, health and readiness."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from llmdock import __version__
from llmdock.gateway.deps import RuntimeDep, principal_of
from llmdock.gateway.http import JSONResponse
from llmdock.gateway.responses import model_card

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request, runtime: RuntimeDep) -> Response:
    principal = principal_of(request)
    names = [n for n in runtime.backends if principal is None or principal.may_use(n)]
    return JSONResponse({"object": "list", "data": [model_card(runtime, n) for n in names]})


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request, runtime: RuntimeDep) -> Response:
    runtime.backend(model_id)
    runtime.auth.check_model(principal_of(request), model_id)
    return JSONResponse(model_card(runtime, model_id))


@router.get("/v1/deployments")
async def deployments(runtime: RuntimeDep) -> Response:
    """Each model's deployments: breaker state, in-flight, latency, limits (admin; auth comes with keys)."""
    return JSONResponse({"object": "list", "data": [route.snapshot() for route in runtime.backends.values()]})


@router.get("/health")
async def health() -> Response:
    return JSONResponse({"status": "ok", "version": __version__, "pid": os.getpid()})


@router.get("/ready")
async def ready(runtime: RuntimeDep) -> Response:
    state = await asyncio.to_thread(runtime.readiness)
    return JSONResponse(state, status_code=200 if state["ready"] else 503)
