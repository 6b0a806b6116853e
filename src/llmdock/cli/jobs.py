"""``llmdock jobs``: run a pipeline YAML (checked before anything runs), list and show the stored runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import CONFIG, open_store

app = typer.Typer(help="Pipelines as YAML: run, list and show runs.", no_args_is_help=True)


@app.command("run")
def run_cmd(
    pipeline_file: Path = typer.Argument(..., help="The pipeline (YAML)", exists=True, dir_okay=False),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, overriding the file's params"),
    config: Path | None = CONFIG,
) -> None:
    """Check the whole pipeline, then run its steps in order; each run and step is stored."""
    from llmdock.cli.access import who
    from llmdock.cli.prompts import parse_vars
    from llmdock.config import load_settings
    from llmdock.jobs.pipeline_spec import load_pipeline
    from llmdock.plugins import load_plugins

    plugins = load_plugins()
    pipeline = load_pipeline(pipeline_file, plugins.job_steps, parse_vars(param))
    settings = load_settings(config)
    run = asyncio.run(_run(settings, plugins, pipeline, who().name))
    typer.echo(f"run {run.id[:12]} {run.status}: llmdock jobs show {run.id[:12]}", err=True)
    if run.status != "succeeded":
        raise typer.Exit(1)


async def _run(settings: Any, plugins: Any, pipeline: Any, by: str) -> Any:
    from llmdock.cli.eval_cmd import open_store_of
    from llmdock.gateway.batch_rows import PipelineRows
    from llmdock.jobs.pipeline_run import run_pipeline
    from llmdock.runtime import Runtime

    err = Console(stderr=True)
    runtime: Runtime | None = None

    def rows() -> PipelineRows:  # the runtime (models, guards) is built only for a step that needs it
        nonlocal runtime
        if runtime is None:
            runtime = Runtime(settings, plugins=plugins)
        return PipelineRows(runtime)

    def report(step: str, status: str, detail: str) -> None:
        colour = {"succeeded": "green", "failed": "red", "skipped": "yellow"}.get(status, "cyan")
        err.print(f"[{colour}]{status:>9}[/] {step} {detail}", highlight=False)

    store = open_store_of(settings)
    try:
        return await run_pipeline(pipeline, plugins.job_steps, store, rows, by=by, report=report)
    finally:
        store.close()
        if runtime is not None:
            await runtime.close()


@app.command("list")
def list_cmd(
    limit: int = typer.Option(20, "--limit", "-n", help="How many, newest first"),
    config: Path | None = CONFIG,
) -> None:
    """The newest pipeline runs."""
    from llmdock.jobs.pipeline_run import list_runs

    table = Table("run", "time (UTC)", "pipeline", "status", "by")
    for run in list_runs(open_store(config), limit):
        table.add_row(
            run.id[:12], run.created_at.strftime("%Y-%m-%d %H:%M:%S"), run.name, run.status, run.created_by
        )
    Console().print(table)


@app.command("show")
def show_cmd(
    run_ref: str = typer.Argument(..., help="Run id or a unique prefix"),
    logs: bool = typer.Option(False, "--logs", help="Each step's log too"),
    config: Path | None = CONFIG,
) -> None:
    """A run's steps: status, duration, outputs or error."""
    from llmdock.jobs.pipeline_run import get_run

    run, steps = get_run(open_store(config), run_ref)
    typer.echo(f"run {run.id} · {run.name} ({run.path}) · {run.status} · params {run.params}")
    table = Table("step", "uses", "status", "ms", "outputs / error")
    for s in steps:
        detail = s.error or ", ".join(f"{k}={v}" for k, v in s.outputs.items())
        table.add_row(s.step_id, s.uses, s.status, f"{s.duration_ms:.0f}", detail.replace("\n", " ")[:100])
    Console().print(table)
    if logs:
        for s in steps:
            if s.log:
                typer.echo(f"--- {s.step_id}\n{s.log}")
