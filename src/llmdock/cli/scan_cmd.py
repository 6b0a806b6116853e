"""``llmdock scan``: red-team probes against a model, a prompt or a URL, through the evaluation runner;
findings printed, an HTML report and its JSON written on request, the run kept in the store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import CONFIG
from llmdock.config import load_settings

if TYPE_CHECKING:
    from llmdock.scan.run import Guards


app = typer.Typer(
    help="Probe a target for injection, jailbreaks, harmful content, disclosure, PII, hallucination, "
    "sycophancy, bias, robustness and format breaks; `llmdock scan report RUN` writes a kept scan's report "
    "again from the store."
)


@app.callback(invoke_without_command=True)
def scan(
    ctx: typer.Context,
    target: str | None = typer.Option(
        None, "--target", "-t", help="A model, a prompt (name@label), or a URL"
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="The model a URL or prompt target asks"),
    guards: str | None = typer.Option(None, help="on, off or both [the served pipeline as it is]"),
    categories: list[str] = typer.Option(
        [], "--categories", help="Categories (comma list or repeated) [all]"
    ),
    limit: int | None = typer.Option(None, min=1, help="At most this many probes (or groups) per category"),
    report: Path | None = typer.Option(None, "--report", help="Write the HTML report here"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the JSON here [beside --report]"),
    judge: str | None = typer.Option(None, help="A model that judges hallucination, sycophancy, harm"),
    seed: int = typer.Option(0, help="Seed of the probe choice and of generation"),
    max_tokens: int = typer.Option(96, min=1, help="Most tokens per answer"),
    concurrency: int = typer.Option(4, min=1, help="Probes at once"),
    config: Path | None = CONFIG,
) -> None:
    """Probe for injection, jailbreaks, harmful content, disclosure, PII, hallucination, sycophancy, bias,
    robustness and format breaks; print the findings, most severe first."""
    from llmdock.cli.access import who
    from llmdock.errors import InvalidRequest
    from llmdock.scan import ScanOptions, parse_categories

    if ctx.invoked_subcommand is not None:
        return
    if target is None:
        raise InvalidRequest(
            "--target is required: a model, a prompt (name@label) or a URL "
            "(or `llmdock scan report RUN` for a kept scan's report)",
            param="target",
        )
    if guards not in (None, "on", "off", "both"):
        raise InvalidRequest("--guards is on, off or both", param="guards")
    for path in (report, json_out):
        if path is not None and not path.parent.is_dir():
            raise InvalidRequest(f"{path.parent} is not a folder", param="report")
    options = ScanOptions(
        target=target,
        model=model,
        guards=cast("Guards", guards),
        categories=tuple(parse_categories(categories)),
        limit=limit,
        seed=seed,
        max_tokens=max_tokens,
        concurrency=concurrency,
        judge=judge,
        config=str(config) if config else None,
    )
    result = asyncio.run(_scan(load_settings(config), options, who().name))
    print_findings(result)
    _write(result.data(), report, json_out or (report.with_suffix(".json") if report else None))
    typer.echo(f"scan {result.run_id}: llmdock eval show {result.run_id[:12]}", err=True)


async def _scan(settings: Any, options: Any, by: str) -> Any:
    from llmdock.errors import ConfigError
    from llmdock.runtime import Runtime
    from llmdock.scan import run_scan

    runtime = Runtime(settings)
    try:
        if runtime.store is None or runtime.store_error:
            raise ConfigError(f"a scan is kept in the store: {runtime.store_error or 'disabled'}")
        return await run_scan(options, runtime, runtime.store, by=by)
    finally:
        await runtime.close()


def print_findings(result: Any) -> None:
    table = Table(title="scan", title_justify="left")
    for column in ("category", "target", "found", "stopped", "resisted", "errored"):
        table.add_column(column, justify="left" if column in ("category", "target") else "right")
    for t in result.tallies:
        c = t.counts
        table.add_row(t.category, t.target, *(str(c[k]) for k in ("found", "blocked", "resisted", "errored")))
    console = Console()
    console.print(table)
    for f in result.findings:
        console.print(
            f"[bold]{f.severity.upper()}[/] {f.category} · {f.target}: {f.failed}/{f.probes} probes",
            highlight=False,
        )
        for e in f.examples[:2]:
            console.print(f"  {e.case_id}: {e.why}", highlight=False, markup=False)
            console.print(f"    {e.reproduce[:300]}", highlight=False, markup=False)


@app.command("report")
def report_cmd(
    run_ref: str = typer.Argument(..., help="The scan's run id (or a unique prefix)"),
    out: Path | None = typer.Option(None, "--output", "-o", help="The HTML report"),
    json_out: Path | None = typer.Option(None, "--json", help="The JSON [beside -o]"),
    config: Path | None = CONFIG,
) -> None:
    """Write a kept scan's report again from the store alone (nothing is asked again)."""
    from llmdock.cli.options import open_store
    from llmdock.errors import InvalidRequest
    from llmdock.scan.stored import load_report

    if out is None and json_out is None:
        raise InvalidRequest("give -o FILE.html and/or --json FILE.json", param="output")
    data = load_report(open_store(config), run_ref)
    _write(data, out, json_out or (out.with_suffix(".json") if out else None))


def _write(data: dict[str, Any], report: Path | None, json_out: Path | None) -> None:
    from llmdock.cli.eval_cmd import write_atomic
    from llmdock.scan.report import to_html, to_json

    if report is not None:
        write_atomic(report, to_html(data))
    if json_out is not None:
        write_atomic(json_out, to_json(data))
    written = [str(p) for p in (report, json_out) if p is not None]
    if written:
        typer.echo(f"wrote {' and '.join(written)}", err=True)
