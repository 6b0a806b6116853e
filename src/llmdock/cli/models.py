"""``llmdock models``: the configured models, and the registry of model versions (register, promote…)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.cli.registry_views import add_label_commands, as_text, print_rows, print_summary
from llmdock.config import load_settings

if TYPE_CHECKING:
    from llmdock.registry import ModelRegistry

app = typer.Typer(help="Configured models, and the model registry.", no_args_is_help=True)


@app.command("list")
def list_models(
    config: Path | None = CONFIG,
) -> None:
    """List every configured model, its backend and task."""
    from llmdock.plugins import load_plugins
    from llmdock.runtime import build_backends

    settings = load_settings(config)
    backends = build_backends(settings, load_plugins())
    table = Table("model", "backend", "task", "context", "description")
    for name, backend in backends.items():
        marker = " (default)" if name in (settings.default_model, settings.default_embedding_model) else ""
        table.add_row(
            name + marker,
            backend.kind,
            backend.task,
            str(backend.context_window or "-"),
            backend.spec.description,
        )
    Console().print(table)


# --- the model registry ----------------------------------------------------------------------------------
def _registry(config: Path | None) -> ModelRegistry:
    from llmdock.registry import ModelRegistry
    from llmdock.store import Store

    settings = load_settings(config)
    return ModelRegistry(Store(settings.resolved_database_url()), settings.home)


@app.command("register")
def register(
    name: str = typer.Argument(..., help="registered model name"),
    path: Path = typer.Argument(..., help="the model file (e.g. a GGUF) or directory (e.g. a LoRA adapter)"),
    fmt: str = typer.Option("", "--format", help="file format (default: the file's suffix)"),
    lineage: list[str] = typer.Option(
        [], "--lineage", help="key=value: what it was made from (base_model, dataset, prompt, run…)"
    ),
    metric: list[str] = typer.Option([], "--metric", help="key=value: evaluation results"),
    description: str = typer.Option("", "--description", "-d"),
    alias: list[str] = typer.Option([], "--alias", "-a", help="aliases to point at the new version"),
    config: Path | None = CONFIG,
) -> None:
    """Store a model file or directory as a content-addressed artifact and record it as the next version."""
    from llmdock.cli.access import who
    from llmdock.cli.prompts import parse_vars

    registry, actor = _registry(config), who()
    row = registry.register(
        name,
        path,
        actor,
        fmt=fmt,
        lineage=parse_vars(lineage),
        metrics=parse_vars(metric),
        description=description,
    )
    for a in alias:
        registry.labels.set(name, a, row.version, actor)
    typer.echo(f"models:/{name}/{row.version} (artifact {row.artifact[:12]}, {row.size:,} bytes)")


@app.command("versions")
def versions(
    name: str | None = typer.Argument(None, help="a registered model (default: list every one)"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Registered models, or the versions of one with aliases, lineage and metrics."""
    registry = _registry(config)
    if name is None:
        print_summary(registry, as_json, "aliases")
        return
    rows = registry.described(name)
    columns = {
        "version": lambda r: r["version"],
        "aliases": lambda r: as_text(r["aliases"]),
        "artifact": lambda r: r["artifact"][:12],
        "size": lambda r: f"{r['size']:,}",
        "lineage": lambda r: as_text(r["lineage"]),
        "metrics": lambda r: as_text(r["metrics"]),
        "by": lambda r: r["created_by"],
        "at": lambda r: r["created_at"][:19],
    }
    print_rows(rows, as_json, columns)


add_label_commands(
    app,
    _registry,
    kind="model",
    word="alias",
    flags=("--alias", "-a"),
    uri_prefix="models:/",
    promote_note="; running gateways serving it follow within a second",
)
