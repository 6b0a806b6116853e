"""Prompts: the registry's templates, one template's versions and labels, a diff between two versions, and
promoting or rolling back a label (developer or admin; audited by the registry as ``prompt.promote`` /
``prompt.rollback`` with the signed-in key as actor). A moved label is served by this worker at once, by
the others within ``prompts.cache_ttl_s``."""

from __future__ import annotations

import asyncio
import difflib
import json
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from llmdock.errors import InvalidRequest
from llmdock.prompts import PromptRegistry
from llmdock.store.models import PromptVersion
from llmdock.ui.pages import Ui, render
from llmdock.ui.session import Viewer


def registry_of(ui: Ui) -> PromptRegistry:
    if ui.runtime.prompts is None:
        raise InvalidRequest("the prompt registry needs the store")
    return ui.runtime.prompts.registry


def _version_number(value: object, field: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidRequest(f"{field}: not a version number: {str(value)[:40]!r}", param=field) from None
    if number < 1:
        raise InvalidRequest(f"{field}: versions start at 1", param=field)
    return number


async def prompts(request: Request, viewer: Viewer, ui: Ui) -> Response:
    rows = await asyncio.to_thread(registry_of(ui).summary, "labels")
    return render(request, "prompts.html", viewer, prompts=rows)


async def prompt(request: Request, viewer: Viewer, ui: Ui) -> Response:
    name = request.path_params["name"]
    versions = await asyncio.to_thread(registry_of(ui).described, name)
    labels = sorted({label for v in versions for label in v["labels"]})
    return render(
        request,
        "prompt.html",
        viewer,
        name=name,
        versions=list(reversed(versions)),
        labels=labels,
        done=request.query_params.get("done", ""),
        pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False),
    )


def as_text(v: PromptVersion) -> list[str]:
    """A version as the lines a diff compares: each message under its role, then the config."""
    lines: list[str] = []
    if v.kind == "chat" and isinstance(v.template, list):
        for m in v.template:
            lines += [f"[{m.get('role', '')}]", *str(m.get("content", "")).splitlines()]
    else:
        lines += str(v.template).splitlines()
    return [*lines, "[config]", *json.dumps(v.config, indent=2, sort_keys=True).splitlines()]


def diff_lines(a: PromptVersion, b: PromptVersion) -> list[tuple[str, str]]:
    """(kind, text) per line of a unified diff: kind is add, del, hunk or same."""
    out = []
    for line in difflib.unified_diff(
        as_text(a), as_text(b), f"version {a.version}", f"version {b.version}", lineterm=""
    ):
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        if line.startswith(("+++", "---")):
            kind = "head"
        out.append((kind, line))
    return out


async def diff(request: Request, viewer: Viewer, ui: Ui) -> Response:
    name, registry = request.path_params["name"], registry_of(ui)
    a = _version_number(request.query_params.get("a", ""), "a")
    b = _version_number(request.query_params.get("b", ""), "b")
    old = await asyncio.to_thread(registry.get, name, version=a)
    new = await asyncio.to_thread(registry.get, name, version=b)
    return render(request, "prompt_diff.html", viewer, name=name, a=old, b=new, lines=diff_lines(old, new))


def _back(request: Request, name: str, done: str) -> Response:
    base = request.scope.get("root_path", "")
    return RedirectResponse(f"{base}/prompts/{quote(name, safe='')}?{urlencode({'done': done})}", 303)


async def promote(request: Request, viewer: Viewer, ui: Ui) -> Response:
    name, form = request.path_params["name"], await request.form()
    label = str(form.get("label", "")).strip()
    version = _version_number(form.get("version", ""), "version")
    registry = registry_of(ui)
    before = await asyncio.to_thread(
        registry.labels.set, name, label, version, viewer.actor(request.client.host if request.client else "")
    )
    if ui.runtime.prompts is not None:
        ui.runtime.prompts.forget(name)
    was = f" (was version {before})" if before is not None else ""
    return _back(request, name, f"{label} now points at version {version}{was}")


async def rollback(request: Request, viewer: Viewer, ui: Ui) -> Response:
    name, form = request.path_params["name"], await request.form()
    label = str(form.get("label", "")).strip()
    registry = registry_of(ui)
    version = await asyncio.to_thread(
        registry.labels.rollback, name, label, viewer.actor(request.client.host if request.client else "")
    )
    if ui.runtime.prompts is not None:
        ui.runtime.prompts.forget(name)
    return _back(request, name, f"{label} rolled back to version {version}")


ROUTES: list[tuple[str, str, Any, bool]] = [
    ("/prompts", "GET", prompts, False),
    ("/prompts/{name}", "GET", prompt, False),
    ("/prompts/{name}/diff", "GET", diff, False),
    ("/prompts/{name}/promote", "POST", promote, True),
    ("/prompts/{name}/rollback", "POST", rollback, True),
]
