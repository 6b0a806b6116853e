"""``llmdock traces``: what happened to each request, stage by stage."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import CONFIG, open_store

app = typer.Typer(help="Request traces from the store.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    limit: int = typer.Option(20, "--limit", "-n", help="How many, newest first"),
    model: str | None = typer.Option(None, help="Only this model"),
    status: str | None = typer.Option(None, help="Only this status: ok, error, cancelled"),
    text: str | None = typer.Option(None, "--text", help="Only traces whose request or answer holds this"),
    config: Path | None = CONFIG,
) -> None:
    """The newest traces."""
    from llmdock.store import list_traces

    store = open_store(config)
    table = Table("id", "time (UTC)", "op", "model", "status", "ms", "in", "out", "source")
    for t in list_traces(store, limit=limit, model=model, status=status, text=text):
        status = t.status if t.http_status == 200 else f"{t.status} {t.http_status}"
        table.add_row(
            t.id[:12],
            t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            t.operation + (" ⇣" if t.stream else ""),
            t.model,
            status,
            f"{t.duration_ms:.0f}",
            str(t.prompt_tokens),
            str(t.completion_tokens),
            str((t.attributes or {}).get("llmdock.source", "")),
        )
    Console().print(table)


@app.command("show")
def show_cmd(
    trace_id: str = typer.Argument(..., help="Trace id or a unique prefix of it"),
    as_json: bool = typer.Option(False, "--json", help="Print the whole trace as JSON"),
    config: Path | None = CONFIG,
) -> None:
    """One trace: the request, each stage's span, the answer."""
    from llmdock.store import get_trace

    trace, spans = get_trace(open_store(config), trace_id)
    if as_json:
        data = {c.name: getattr(trace, c.name) for c in trace.__table__.columns}
        data["spans"] = [asdict(s) for s in spans]
        typer.echo(json.dumps(data, default=str, indent=2, ensure_ascii=False))
        return
    console = Console()
    console.print(f"[bold]trace {trace.id}[/bold]  {trace.created_at:%Y-%m-%d %H:%M:%S} UTC")
    console.print(
        f"{trace.operation} · model {trace.model} ({trace.backend}) · {trace.status} {trace.http_status} · "
        f"{trace.duration_ms:.1f} ms · tokens in {trace.prompt_tokens} out {trace.completion_tokens}"
        + (f" · finish {trace.finish_reason}" if trace.finish_reason else "")
    )
    if trace.error:
        console.print(f"[red]error:[/red] {trace.error}")
    table = Table("#", "stage", "status", "ms", "attributes")
    for s in spans:
        attrs = ", ".join(f"{k}={v}" for k, v in (s.attributes or {}).items())
        table.add_row(str(s.seq), s.name, s.status, f"{s.duration_ms:.2f}", attrs)
    console.print(table)
    params = {k: v for k, v in (trace.attributes or {}).items() if k.startswith("gen_ai.request.")}
    if params:
        console.print(
            "parameters: " + ", ".join(f"{k.removeprefix('gen_ai.request.')}={v}" for k, v in params.items())
        )
    if trace.input:
        console.print("[bold]input[/bold]")
        console.print(json.dumps(trace.input, ensure_ascii=False, indent=1), markup=False)
    if trace.output:
        console.print("[bold]output[/bold]")
        console.print(trace.output, markup=False)
