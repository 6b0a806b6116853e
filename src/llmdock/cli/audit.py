"""``llmdock audit``: read the audit log and verify its hash chain."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.config import load_settings

app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)


def _store(config: Path | None):  # type: ignore[no-untyped-def]
    from llmdock.store import Store

    return Store(load_settings(config).resolved_database_url())


@app.command("list")
def audit_list(
    limit: int = typer.Option(50, help="Newest rows first"),
    action: str | None = typer.Option(None, help="Only these actions (e.g. 'key.*')"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    from llmdock.store.audit import list_rows, row_view

    rows = [row_view(r) for r in list_rows(_store(config), limit=limit, action=action)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("seq", "at", "actor", "action", "target", "source")
    for r in rows:
        table.add_row(str(r["seq"]), r["at"][:19], r["actor"], r["action"], r["target"], r["source"])
    Console().print(table)


@app.command("verify")
def audit_verify(
    expect_head: str | None = typer.Option(
        None, help="A head hash recorded earlier, which must be in the chain"
    ),
    config: Path | None = CONFIG,
) -> None:
    """Check the hash chain; name every edited, removed or reordered row. Exit 1 if any."""
    from llmdock.store.audit import verify

    result = verify(_store(config), expect_head=expect_head)
    for problem in result.problems:
        typer.echo(f"audit: {problem}")
    if not result.ok:
        typer.echo(f"audit log: {len(result.problems)} problem(s) in {result.rows} rows", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {result.rows} rows, head {result.head_hash}")
