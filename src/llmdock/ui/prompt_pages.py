"""Prompts: the registry's templates, one template's versions and labels, a diff between two versions, and
promoting or rolling back a label (developer or admin; audited by the registry as ``prompt.promote`` /
``prompt.rollback`` with the signed-in key as actor). A moved label is served by this worker at once, by
the others within ``prompts.cache_ttl_s``."""

from __future__ import annotations

import asyncio
import difflib
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import InvalidRequest
from llmdock.prompts import PromptRegistry
from llmdock.store.models import PromptVersion
from llmdock.ui.labels import label_routes, version_number
from llmdock.ui.pages import Ui, render
from llmdock.ui.session import Viewer


def registry_of(ui: Ui) -> PromptRegistry:
    if ui.runtime.prompts is None:
        raise InvalidRequest("the prompt registry needs the store")
    return ui.runtime.prompts.registry


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
    a = version_number(request.query_params.get("a", ""), "a")
    b = version_number(request.query_params.get("b", ""), "b")
    old = await asyncio.to_thread(registry.get, name, version=a)
    new = await asyncio.to_thread(registry.get, name, version=b)
    return render(request, "prompt_diff.html", viewer, name=name, a=old, b=new, lines=diff_lines(old, new))


ROUTES: list[tuple[str, str, Any, bool]] = [
    ("/prompts", "GET", prompts, False),
    ("/prompts/{name}", "GET", prompt, False),
    ("/prompts/{name}/diff", "GET", diff, False),
    *label_routes("prompts", registry_of),
]
