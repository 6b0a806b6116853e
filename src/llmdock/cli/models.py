"""``llmdock models``: the configured models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmdock.config import load_settings

app = typer.Typer(help="Configured models.", no_args_is_help=True)


@app.command("list")
def list_models(
    config: Path | None = typer.Option(None, "--config", "-c", help="llmdock.yaml"),
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
