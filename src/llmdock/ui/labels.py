"""Promoting and rolling back a label of a registry (a prompt's label, a model's alias) from a form: one path
for both registries, audited by the registry with the signed-in key as actor, answered by a redirect to the
page it came from with what changed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from llmdock.errors import InvalidRequest
from llmdock.registry import Versioned
from llmdock.ui.pages import Ui
from llmdock.ui.session import Viewer


def version_number(value: object, field: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidRequest(f"{field}: not a version number: {str(value)[:40]!r}", param=field) from None
    if number < 1:
        raise InvalidRequest(f"{field}: versions start at 1", param=field)
    return number


def source_of(request: Request) -> str:
    return request.client.host if request.client else ""


def back(request: Request, section: str, name: str, done: str) -> Response:
    base = request.scope.get("root_path", "")
    return RedirectResponse(f"{base}/{section}/{quote(name, safe='')}?{urlencode({'done': done})}", 303)


async def move(
    request: Request, viewer: Viewer, ui: Ui, registry: Versioned[Any], section: str, *, rollback: bool
) -> Response:
    """Promote the form's label to the form's version, or (``rollback``) move it back one step; a prompt
    moved is forgotten by this worker's cache so the next request uses it."""
    name, form = request.path_params["name"], await request.form()
    label = str(form.get("label", "")).strip()
    actor = viewer.actor(source_of(request))
    if rollback:
        version = await asyncio.to_thread(registry.labels.rollback, name, label, actor)
        done = f"{label} rolled back to version {version}"
    else:
        version = version_number(form.get("version", ""), "version")
        before = await asyncio.to_thread(registry.labels.set, name, label, version, actor)
        was = f" (was version {before})" if before is not None else ""
        done = f"{label} now points at version {version}{was}"
    if registry.kind == "prompt" and ui.runtime.prompts is not None:
        ui.runtime.prompts.forget(name)
    return back(request, section, name, done)


def label_routes(
    section: str, registry_of: Callable[[Ui], Versioned[Any]]
) -> list[tuple[str, str, Any, bool]]:
    """The promote and roll back routes of a registry's pages under ``/section/{name}`` (developer or admin)."""

    async def promote(request: Request, viewer: Viewer, ui: Ui) -> Response:
        return await move(request, viewer, ui, registry_of(ui), section, rollback=False)

    async def rollback(request: Request, viewer: Viewer, ui: Ui) -> Response:
        return await move(request, viewer, ui, registry_of(ui), section, rollback=True)

    return [
        (f"/{section}/{{name}}/promote", "POST", promote, True),
        (f"/{section}/{{name}}/rollback", "POST", rollback, True),
    ]
