"""``llmdock eval report``: runs as one self-contained HTML page (plots, summaries, the comparison of the
first two, a case browser with filters), and the same data as JSON beside it."""

from __future__ import annotations

from pathlib import Path

import typer

from llmdock.cli.eval_cmd import app, write_atomic
from llmdock.cli.options import CONFIG, open_store


@app.command("report")
def report_cmd(
    runs: list[str] = typer.Argument(..., help="Run ids or unique prefixes; the first two are compared"),
    out: Path = typer.Option(
        ..., "--output", "-o", help="The HTML file (replaced atomically); the JSON goes beside it"
    ),
    alpha: float = typer.Option(0.05, help="Significance level of the comparison"),
    config: Path | None = CONFIG,
) -> None:
    """Write an HTML report that opens without a network, and its data as JSON (same name, .json)."""
    from llmdock.errors import InvalidRequest
    from llmdock.evaluate.report import build, load_run, to_html, to_json

    data_path = out.with_suffix(".json")
    if data_path == out:
        raise InvalidRequest("--output is the HTML page; its JSON is written beside it", param="output")
    if not out.parent.is_dir():
        raise InvalidRequest(f"{out.parent} is not a folder", param="output")
    store = open_store(config)
    report = build([load_run(store, ref) for ref in runs], alpha=alpha)
    write_atomic(out, to_html(report))
    write_atomic(data_path, to_json(report))
    typer.echo(f"wrote {out} and {data_path} ({len(report.rows)} results)", err=True)
