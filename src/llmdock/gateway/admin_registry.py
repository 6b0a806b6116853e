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
from llmdock.gateway.http import JSONResponse, parse_body, read_body
from llmdock.prompts import PromptRegistry
from llmdock.registry import ModelRegistry, Versioned
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor


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
    version: int = Field(gt=0)


def build_registry_router(runtime: Runtime, limit: int, actor: Callable[[Request], Actor]) -> APIRouter:
    router = APIRouter()  # included in the /admin router

    def prompts() -> PromptRegistry:
        if runtime.prompts is None:
            raise InvalidRequest("the prompt registry needs the store")
        return runtime.prompts.registry

    def models() -> ModelRegistry:
        if runtime.store is None:
            raise InvalidRequest("the model registry needs the store")
        return ModelRegistry(runtime.store, runtime.settings.home)

    def summary(registry: Versioned[Any], word: str) -> dict[str, Any]:
        return {"object": "list", "data": registry.summary(word)}

    def moved(kind: str, name: str) -> None:
        if kind == "prompt" and runtime.prompts is not None:
            runtime.prompts.forget(name)  # this worker serves the new version at once

    def label_routes(path: str, kind: str, get: Callable[[], Versioned[Any]], word: str, plural: str) -> None:
        @router.post(f"/{path}/{{name}}/{plural}")
        async def promote(name: str, request: Request) -> Response:
            body = parse_body(await read_body(request, limit), LabelBody)
            registry = get()
            before = await asyncio.to_thread(
                registry.labels.set, name, body.label, body.version, actor(request)
            )
            moved(kind, name)
            return JSONResponse({"name": name, word: body.label, "version": body.version, "before": before})

        @router.post(f"/{path}/{{name}}/{plural}/{{label}}/rollback")
        async def rollback(name: str, label: str, request: Request) -> Response:
            registry = get()
            version = await asyncio.to_thread(registry.labels.rollback, name, label, actor(request))
            moved(kind, name)
            return JSONResponse({"name": name, word: label, "version": version})

    @router.get("/prompts")
    async def list_prompts() -> Response:
        return JSONResponse(await asyncio.to_thread(summary, prompts(), "labels"))

    @router.post("/prompts")
    async def create_prompt(request: Request) -> Response:
        body = parse_body(await read_body(request, limit), PromptBody)
        if (body.messages is None) == (body.text is None):
            raise InvalidRequest("give either 'messages' (chat) or 'text' (completion)", param="messages")
        registry, who = prompts(), actor(request)
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
        moved("prompt", row.name)
        view = await asyncio.to_thread(registry.described_one, row)
        return JSONResponse({**view, "created": new}, status_code=201 if new else 200)

    @router.get("/prompts/{name}")
    async def prompt_versions(name: str) -> Response:
        data = await asyncio.to_thread(prompts().described, name)
        return JSONResponse({"object": "list", "data": data})

    @router.get("/models")
    async def list_models() -> Response:
        return JSONResponse(await asyncio.to_thread(summary, models(), "aliases"))

    @router.get("/models/{name}")
    async def model_versions(name: str) -> Response:
        data = await asyncio.to_thread(models().described, name)
        return JSONResponse({"object": "list", "data": data})

    label_routes("prompts", "prompt", prompts, "label", "labels")
    label_routes("models", "model", models, "alias", "aliases")
    return router
