"""What ``llmdock prompts`` and ``llmdock models`` share: tables of what is registered, and label moves."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.access import who
from llmdock.cli.options import CONFIG
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


def add_label_commands(
    app: typer.Typer,
    registry: Callable[[Path | None], Versioned[Any]],
    *,
    kind: str,
    word: str,
    flags: tuple[str, str],
    uri_prefix: str = "",
    promote_note: str = "",
) -> None:
    """Add ``promote`` and ``rollback`` to ``app``: they move a label (called ``word``: label, alias…).

    ``kind`` names the audit actions (``<kind>.promote``), ``flags`` the label's option (``--label``, ``-l``),
    ``uri_prefix`` what the output puts before ``NAME@LABEL``.
    """
    a_word = f"{'an' if word[0] in 'aeiou' else 'a'} {word}"
    label_option = typer.Option("production", *flags)

    def promote(name: str, version: int, label: str = label_option, config: Path | None = CONFIG) -> None:
        before = registry(config).labels.set(name, label, version, who())
        typer.echo(f"{uri_prefix}{name}@{label}: {before if before is not None else '-'} → {version}")

    def rollback(name: str, label: str = label_option, config: Path | None = CONFIG) -> None:
        version = registry(config).labels.rollback(name, label, who())
        typer.echo(f"{uri_prefix}{name}@{label} → {version}")

    promote.__doc__ = f"Point {a_word} at a version (audited as {kind}.promote){promote_note}."
    rollback.__doc__ = f"Move {a_word} back to the version it pointed at before (audited as {kind}.rollback)."
    app.command("promote")(promote)
    app.command("rollback")(rollback)
