"""``llmdock build``: the files that deploy a gateway, written from templates (jinja2): a Dockerfile (two
stages, an unprivileged user, the base image pinned to this Python, dependencies pinned by constraints.txt,
HEALTHCHECK on ``/ready``), the image's ``llmdock.yaml`` (serving a registered model when one is given), a
compose file with PostgreSQL and Redis (and a scheduler), and Kubernetes manifests (Deployment with readiness,
liveness and startup probes, Service, HorizontalPodAutoscaler on ``llmdock_in_flight_requests``).

The image installs llmdock from its source tree (``pyproject.toml`` and ``constraints.txt`` beside ``src/``):
the build context is that folder, and the files name their paths relative to it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

import llmdock
from llmdock.errors import InvalidRequest
from llmdock.registry import ModelRegistry

POSTGRES = "docker.io/library/postgres:16.6-bookworm"
REDIS = "docker.io/library/redis:7.4.1-bookworm"
FILES = {
    "Dockerfile": "Dockerfile.j2",
    "llmdock.yaml": "llmdock.yaml.j2",
    "compose.yaml": "compose.yaml.j2",
    "k8s/deployment.yaml": "deployment.yaml.j2",
    "k8s/service.yaml": "service.yaml.j2",
    "k8s/hpa.yaml": "hpa.yaml.j2",
}


@dataclass
class BuildPlan:
    project: Path  # the build context: llmdock's source tree
    out: Path
    image: str
    model_uri: str | None = None
    base: str = ""  # the base image of both stages (default: base_image())


def find_project(start: Path) -> Path:
    """The llmdock source tree at or above ``start`` (its pyproject names the project llmdock)."""
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "llmdock"' in pyproject.read_text() and (folder / "src").is_dir():
            return folder
    raise InvalidRequest(
        f"no llmdock source tree at or above {start}: run llmdock build from it (the image installs llmdock "
        "from its pyproject.toml, constraints.txt and src/)",
        param="project",
    )


def base_image() -> str:
    v = sys.version_info
    return f"docker.io/library/python:{v.major}.{v.minor}.{v.micro}-slim-bookworm"


def write_files(plan: BuildPlan, registry: ModelRegistry | None) -> list[Path]:
    """Render every file into ``plan.out`` (a registered model's artifact copied beside them); returns them."""
    out = plan.out.resolve()
    try:
        rel = out.relative_to(plan.project.resolve()).as_posix()
    except ValueError:
        raise InvalidRequest(f"{out} is outside the build context {plan.project}", param="out") from None
    values: dict[str, object] = {
        "version": llmdock.__version__,
        "out": rel,
        "context": os.path.relpath(plan.project.resolve(), out),
        "image": plan.image,
        "base": plan.base or base_image(),
        "postgres": POSTGRES,
        "redis": REDIS,
        "model_file": "",
        "model_name": "",
    }
    written: list[Path] = []
    if plan.model_uri:
        if registry is None:
            raise InvalidRequest("--model needs the store (the model registry)", param="model")
        path, row = registry.resolve(plan.model_uri)
        target = out / "model" / row.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written.append(target)
        values |= {
            "model_file": row.filename,
            "model_name": row.name,
            "model_uri": plan.model_uri,
            "model_version": row.version,
            "model_sha": row.artifact[:12],
        }
    # Wheels put here are used before any index: a prebuilt llama-cpp-python, an air-gapped mirror.
    (out / "wheels").mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("llmdock.jobs", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Dockerfile and YAML, not HTML
    )
    for name, template in FILES.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(env.get_template(template).render(values))
        written.append(target)
    return written
