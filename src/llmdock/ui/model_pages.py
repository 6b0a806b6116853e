"""Models: the registry's models, one model's versions with their aliases, lineage (base → adapter →
dataset → prompt, from the lineage keys ``llmdock finetune`` records) and metrics, what was made from each
version, and promoting or rolling back an alias (developer or admin; audited by the registry as
``model.promote`` / ``model.rollback``). The registry is shared by every team, as for the CLI."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmdock.registry import ModelRegistry
from llmdock.store.models import ModelVersion
from llmdock.ui.labels import label_routes
from llmdock.ui.pages import Ui, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

# The lineage keys shown as the chain's steps; every other key is listed under "more".
STEPS = (
    ("base", ("base_model", "base_model_version")),
    ("adapter", ("training_run", "method", "quantization")),
    ("dataset", ("dataset", "dataset_version")),
    ("prompt", ("prompt", "prompt_template", "prompt_version", "prompts")),
)


@dataclass(frozen=True, slots=True)
class Step:
    """One link of a version's lineage: what it is, the values recorded, and a page to go to (or "")."""

    kind: str
    values: list[tuple[str, str]]
    link: str


def registry_of(ui: Ui) -> ModelRegistry:
    return ModelRegistry(store_of(ui), ui.runtime.settings.home)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _link(kind: str, lineage: dict[str, Any]) -> str:
    """A dashboard path for a step that names a registered model version or a prompt ("" otherwise)."""
    if kind == "base":
        ref = str(lineage.get("base_model_version", ""))
        name, _, version = ref.rpartition("/")
        return f"/models/{name}#v{version}" if name and version.isdigit() else ""
    if kind == "prompt":
        name = str(lineage.get("prompt_template") or lineage.get("prompt") or "").split("/")[0]
        return f"/prompts/{name}" if name else ""
    return ""


def lineage_steps(lineage: dict[str, Any]) -> tuple[list[Step], list[tuple[str, str]]]:
    """The chain's steps recorded in ``lineage`` (base, adapter, dataset, prompt; absent ones left out), and
    the other keys."""
    steps, used = [], set()
    for kind, keys in STEPS:
        values = [(k, _text(lineage[k])) for k in keys if k in lineage]
        used |= {k for k, _ in values}
        if values:
            steps.append(Step(kind, values, _link(kind, lineage)))
    return steps, [(k, _text(v)) for k, v in sorted(lineage.items()) if k not in used]


async def models(request: Request, viewer: Viewer, ui: Ui) -> Response:
    rows = await asyncio.to_thread(registry_of(ui).summary, "aliases")
    return render(request, "models.html", viewer, models=rows)


def _model_data(registry: ModelRegistry, name: str) -> dict[str, Any]:
    versions = registry.described(name)
    children: dict[int, list[ModelVersion]] = {
        v["version"]: registry.with_lineage(base_model_version=f"{name}/{v['version']}") for v in versions
    }
    return {
        "name": name,
        "versions": [
            v | {"steps": lineage_steps(v["lineage"]), "children": children[v["version"]]}
            for v in reversed(versions)
        ],
        "aliases": sorted({a for v in versions for a in v["aliases"]}),
    }


async def model(request: Request, viewer: Viewer, ui: Ui) -> Response:
    data = await asyncio.to_thread(_model_data, registry_of(ui), request.path_params["name"])
    return render(request, "model.html", viewer, done=request.query_params.get("done", ""), **data)


ROUTES: list[tuple[str, str, Any, bool]] = [
    ("/models", "GET", models, False),
    ("/models/{name}", "GET", model, False),
    *label_routes("models", registry_of),
]
