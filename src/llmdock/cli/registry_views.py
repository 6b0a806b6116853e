"""Tables shared by ``llmdock prompts`` and ``llmdock models``: what is registered, with its labels."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.registry import Versioned


def print_summary(registry: Versioned[Any], as_json: bool, labels_header: str) -> None:
    """Every name with its number of versions, latest version and labels (``label→version``)."""
    rows = registry.summary(labels_header)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("name", "versions", "latest", labels_header)
    for r in rows:
        labels = ", ".join(f"{k}→{v}" for k, v in sorted(r[labels_header].items()))
        table.add_row(r["name"], str(r["versions"]), str(r["latest"]), labels or "-")
    Console().print(table)


def print_rows(rows: list[dict[str, Any]], as_json: bool, columns: dict[str, Any]) -> None:
    """Version rows as JSON, or as a table with ``columns`` (header → function of a row giving text)."""
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(*columns)
    for r in rows:
        table.add_row(*(str(f(r)) for f in columns.values()))
    Console().print(table)


def as_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value) if value else "-"
    return str(value) if value not in (None, "") else "-"
