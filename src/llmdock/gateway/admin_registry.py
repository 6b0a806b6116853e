"""The admin API for the registries: prompt templates (versions, labels) and registered models (aliases).

``/admin/prompts`` lists and saves templates; ``/admin/prompts/{name}`` lists versions;
``POST /admin/prompts/{name}/labels`` promotes (``{"label": "production", "version": 3}``) and
``POST /admin/prompts/{name}/labels/{label}/rollback`` moves a label back. ``/admin/models…`` offers the
same for the model registry's aliases (registering a model file stays with the CLI: it copies a file on the
server's disk). Every change is audited with the calling key as actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import InvalidRequest
from llmdock.gateway.deps import RuntimeDep, actor_of, body_of, runtime_of
from llmdock.gateway.http import JSONResponse
from llmdock.gateway.openapi import json_body
from llmdock.gateway.schemas import StoredCount
from llmdock.prompts import PromptRegistry
from llmdock.registry import ModelRegistry, Versioned
from llmdock.runtime import Runtime


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptBody(_Body):
    name: str
    messages: list[dict[str, Any]] | None = None
    text: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    message: str = ""
    labels: list[str] = Field(default_factory=list)


class LabelBody(_Body):
    label: str
    version: StoredCount


Handler = Callable[..., Any]
GetRegistry = Callable[[Runtime], Versioned[Any]]


def prompt_registry(runtime: Runtime) -> PromptRegistry:
    if runtime.prompts is None:
        raise InvalidRequest("the prompt registry needs the store")
    return runtime.prompts.registry


def model_registry(runtime: Runtime) -> ModelRegistry:
    if runtime.store is None:
        raise InvalidRequest("the model registry needs the store")
    return ModelRegistry(runtime.store, runtime.settings.home)


def moved(runtime: Runtime, kind: str, name: str) -> None:
    if kind == "prompt" and runtime.prompts is not None:
        runtime.prompts.forget(name)  # this worker serves the new version at once


def summary_route(get: GetRegistry, labels_key: str) -> Handler:
    """GET every name in a registry, with its versions and labels."""

    async def handler(runtime: RuntimeDep) -> Response:
        data = await asyncio.to_thread(get(runtime).summary, labels_key)
        return JSONResponse({"object": "list", "data": data})

    return handler


def versions_route(get: GetRegistry) -> Handler:
    """GET every version of one name."""

    async def handler(name: str, runtime: RuntimeDep) -> Response:
        data = await asyncio.to_thread(get(runtime).described, name)
        return JSONResponse({"object": "list", "data": data})

    return handler


def promote_route(kind: str, get: GetRegistry, word: str) -> Handler:
    """POST a label (alias) onto a version."""

    async def handler(name: str, request: Request) -> Response:
        runtime = runtime_of(request)
        body = await body_of(request, LabelBody, runtime)
        registry = get(runtime)
        before = await asyncio.to_thread(
            registry.labels.set, name, body.label, body.version, actor_of(request)
        )
        moved(runtime, kind, name)
        return JSONResponse({"name": name, word: body.label, "version": body.version, "before": before})

    return handler


def rollback_route(kind: str, get: GetRegistry, word: str) -> Handler:
    """POST a label (alias) back to the version it had before."""

    async def handler(name: str, label: str, request: Request) -> Response:
        runtime = runtime_of(request)
        registry = get(runtime)
        version = await asyncio.to_thread(registry.labels.rollback, name, label, actor_of(request))
        moved(runtime, kind, name)
        return JSONResponse({"name": name, word: label, "version": version})

    return handler


async def create_prompt(request: Request) -> Response:
    runtime = runtime_of(request)
    body = await body_of(request, PromptBody, runtime)
    if (body.messages is None) == (body.text is None):
        raise InvalidRequest("give either 'messages' (chat) or 'text' (completion)", param="messages")
    registry, who = prompt_registry(runtime), actor_of(request)
    row, new = await asyncio.to_thread(
        registry.create,
        body.name,
        who,
        kind="chat" if body.messages is not None else "text",
        template=body.messages if body.messages is not None else body.text,
        config=body.config,
        message=body.message,
    )
    for label in body.labels:
        await asyncio.to_thread(registry.labels.set, row.name, label, row.version, who)
    moved(runtime, "prompt", row.name)
    view = await asyncio.to_thread(registry.described_one, row)
    return JSONResponse({**view, "created": new}, status_code=201 if new else 200)


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("list_prompts", "GET", "/prompts", summary_route(prompt_registry, "labels")),
    ("create_prompt", "POST", "/prompts", create_prompt),
    ("prompt_versions", "GET", "/prompts/{name}", versions_route(prompt_registry)),
    ("list_models", "GET", "/models", summary_route(model_registry, "aliases")),
    ("model_versions", "GET", "/models/{name}", versions_route(model_registry)),
    ("promote", "POST", "/prompts/{name}/labels", promote_route("prompt", prompt_registry, "label")),
    (
        "rollback",
        "POST",
        "/prompts/{name}/labels/{label}/rollback",
        rollback_route("prompt", prompt_registry, "label"),
    ),
    ("promote", "POST", "/models/{name}/aliases", promote_route("model", model_registry, "alias")),
    (
        "rollback",
        "POST",
        "/models/{name}/aliases/{label}/rollback",
        rollback_route("model", model_registry, "alias"),
    ),
]
BODIES: dict[str, type[BaseModel]] = {  # the body each POST route parses (for the OpenAPI document)
    "/prompts": PromptBody,
    "/prompts/{name}/labels": LabelBody,
    "/models/{name}/aliases": LabelBody,
}
registry_router = APIRouter()  # included in the /admin router
for _name, _method, _path, _handler in ROUTES:
    _body = BODIES.get(_path) if _method == "POST" else None
    _extra = json_body(_body) if _body else None
    registry_router.add_api_route(_path, _handler, methods=[_method], name=_name, openapi_extra=_extra)
