"""``llmdock usage``: requests, tokens and cost by day, model and deployment."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import CONFIG
from llmdock.config import load_settings


def usage(
    days: int = typer.Option(7, help="How many days back (UTC)"),
    model: str | None = typer.Option(None, help="Only this model"),
    as_json: bool = typer.Option(False, "--json", help="Rows as JSON"),
    config: Path | None = CONFIG,
) -> None:
    """Usage and cost summarised by day, model and deployment (from the traces)."""
    from llmdock.store import Store
    from llmdock.store.usage import usage_summary

    rows = usage_summary(Store(load_settings(config).resolved_database_url()), days=days, model=model)
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table(
        "day", "model", "deployment", "requests", "errors", "cache hits", "tokens in", "tokens out", "cost"
    )
    for r in rows:
        table.add_row(
            r.day,
            r.model,
            r.deployment or "-",
            str(r.requests),
            str(r.errors),
            str(r.cache_hits),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            f"{r.cost:.6f}",
        )
    if rows:
        table.add_section()
        table.add_row(
            "total",
            "",
            "",
            str(sum(r.requests for r in rows)),
            str(sum(r.errors for r in rows)),
            str(sum(r.cache_hits for r in rows)),
            str(sum(r.prompt_tokens for r in rows)),
            str(sum(r.completion_tokens for r in rows)),
            f"{sum(r.cost for r in rows):.6f}",
        )
    Console().print(table)
