"""``llmdock jobs``: run a pipeline YAML (checked before anything runs), list, show, follow the logs of and
cancel the stored runs. Schedules are in ``cli/jobs_schedule.py``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.executors import ADDRESS, EXECUTOR, WORKERS
from llmdock.cli.options import CONFIG, open_store

app = typer.Typer(help="Pipelines as YAML: run, list, show, logs, cancel; schedules.", no_args_is_help=True)
LEASE = typer.Option(30.0, "--lease-s", min=1, help="Without a heartbeat for this long, the run is lost")
COLOURS = {
    "kept": "green",
    "succeeded": "green",
    "cached": "green",
    "failed": "red",
    "skipped": "yellow",
    "cancelled": "red",
}


@app.command("run")
def run_cmd(
    pipeline_file: Path = typer.Argument(..., help="The pipeline (YAML)", exists=True, dir_okay=False),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, overriding the file's params"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Run cached steps again (their keys are kept)"),
    executor: str | None = EXECUTOR,
    address: str | None = ADDRESS,
    workers: int | None = WORKERS,
    lease_s: float = LEASE,
    config: Path | None = CONFIG,
) -> None:
    """Check the whole pipeline, then run its steps in order; each run and step is stored."""
    from llmdock.cli.access import who
    from llmdock.cli.prompts import parse_vars
    from llmdock.config import load_settings
    from llmdock.jobs.executor import chosen
    from llmdock.jobs.pipeline_spec import load_pipeline
    from llmdock.plugins import load_plugins

    plugins = load_plugins()
    pipeline = load_pipeline(pipeline_file, plugins.job_steps, parse_vars(param))
    pipeline.executor = chosen(executor, address, workers, pipeline.executor)
    settings = load_settings(config)
    run = asyncio.run(
        run_pipeline_file(settings, plugins, pipeline, who(), use_cache=not no_cache, lease_s=lease_s)
    )
    _ended(run)


def _ended(run: Any) -> None:
    typer.echo(f"run {run.id[:12]} {run.status}: llmdock jobs show {run.id[:12]}", err=True)
    if run.status != "succeeded":
        raise typer.Exit(1)


@app.command("resume")
def resume_cmd(
    run_ref: str = typer.Argument(
        ..., help="Run id or a unique prefix: failed, cancelled, or its runner lost"
    ),
    executor: str | None = EXECUTOR,
    address: str | None = ADDRESS,
    workers: int | None = WORKERS,
    lease_s: float = LEASE,
    config: Path | None = CONFIG,
) -> None:
    """Take over a run whose runner died (once its lease has run out), failed or was cancelled: the steps
    that had finished keep their outputs, the others run again, under the same run id."""
    from llmdock.cli.access import who
    from llmdock.cli.eval_cmd import open_store_of
    from llmdock.config import load_settings
    from llmdock.jobs.executor import chosen
    from llmdock.jobs.pipeline_spec import load_pipeline
    from llmdock.jobs.run_store import claim_for_resume, get_run
    from llmdock.plugins import load_plugins

    settings = load_settings(config)
    plugins = load_plugins()
    store = open_store_of(settings)
    try:
        stored, _ = get_run(store, run_ref)
        pipeline = load_pipeline(Path(stored.path), plugins.job_steps, dict(stored.params))
        pipeline.executor = chosen(executor, address, workers, pipeline.executor)
        claimed = claim_for_resume(store, stored.id, lease_s)
    finally:
        store.close()
    kept = sum(s.status in ("succeeded", "cached") for s in claimed[1])
    typer.echo(f"run {stored.id[:12]}: resuming, {kept} of {len(claimed[1])} steps kept", err=True)
    _ended(
        asyncio.run(run_pipeline_file(settings, plugins, pipeline, who(), lease_s=lease_s, resume=claimed))
    )


async def run_pipeline_file(
    settings: Any, plugins: Any, pipeline: Any, actor: Any, *, use_cache: bool = True, prefix: str = "",
    lease_s: float = 30.0, resume: Any = None,
) -> Any:  # fmt: skip
    """Run a checked pipeline in this process, steps reported on stderr; the runtime (models, guards) is
    built only when a step needs it."""
    from llmdock.cli.eval_cmd import open_store_of
    from llmdock.cli.executors import worker_builders
    from llmdock.gateway.batch_rows import PipelineRows
    from llmdock.jobs.pipeline_run import RunOptions, run_pipeline
    from llmdock.jobs.steps import Services
    from llmdock.runtime import Runtime

    err = Console(stderr=True)
    runtime: Runtime | None = None

    def serving() -> Runtime:
        nonlocal runtime
        if runtime is None:
            runtime = Runtime(settings, plugins=plugins)
        return runtime

    def report(step: str, status: str, detail: str) -> None:
        colour = COLOURS.get(status, "cyan")
        err.print(f"{prefix}[{colour}]{status:>9}[/] {step} {detail}", highlight=False)

    store = open_store_of(settings)
    services = Services(settings, store, actor, serving, plugins.metrics, plugins.dataset_steps)
    options = RunOptions(
        by=actor.name,
        use_cache=use_cache,
        services=services,
        builders=worker_builders(settings),
        lease_s=lease_s,
    )
    try:
        return await run_pipeline(
            pipeline,
            plugins.job_steps,
            store,
            lambda: PipelineRows(serving()),
            options=options,
            report=report,
            resume=resume,
        )
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
    from llmdock.jobs.run_store import list_runs, reap_lost

    store = open_store(config)
    reap_lost(store)
    table = Table("run", "time (UTC)", "pipeline", "status", "by")
    for run in list_runs(store, limit):
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
    """A run's steps: status, attempts, duration, outputs or error (a cached step: the run it reused)."""
    from llmdock.jobs.run_store import get_run, reap_lost

    store = open_store(config)
    reap_lost(store)
    run, steps = get_run(store, run_ref)
    typer.echo(f"run {run.id} · {run.name} ({run.path}) · {run.status} · params {run.params}")
    if run.error:
        typer.echo(f"error: {run.error}")
    table = Table("step", "uses", "status", "tries", "ms", "outputs / error")
    for s in steps:
        detail = s.error or ", ".join(f"{k}={v}" for k, v in s.outputs.items())
        if s.cached_from:
            detail = f"(from run {s.cached_from[:12]}) {detail}"
        status = f"[{COLOURS.get(s.status, 'cyan')}]{s.status}[/]"
        tries = str(s.attempts) if s.attempts else ""
        table.add_row(
            s.step_id, s.uses, status, tries, f"{s.duration_ms:.0f}", detail.replace("\n", " ")[:100]
        )
    Console().print(table)
    if logs:
        for s in steps:
            if s.log:
                typer.echo(f"--- {s.step_id}\n{s.log}")


@app.command("logs")
def logs_cmd(
    run_ref: str = typer.Argument(..., help="Run id or a unique prefix"),
    step: str | None = typer.Argument(None, help="One step's id (default: every step)"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the run ends"),
    config: Path | None = CONFIG,
) -> None:
    """The stored logs of a run's steps (a running step's log is flushed while it runs)."""
    from llmdock.errors import NotFound
    from llmdock.jobs.run_store import FINAL, get_run, reap_lost

    store = open_store(config)
    printed: dict[str, int] = {}
    while True:
        reap_lost(store)
        run, steps = get_run(store, run_ref)
        chosen = [s for s in steps if step is None or s.step_id == step]
        if not chosen:
            raise NotFound(f"run {run.id[:12]} has no step {step!r} ({', '.join(s.step_id for s in steps)})")
        for s in chosen:
            lines = s.log.splitlines() if s.log else []
            done = printed.get(s.step_id, 0)
            if lines[done:] and step is None and not done:
                typer.echo(f"--- {s.step_id} ({s.status})")
            for line in lines[done:]:
                typer.echo(line)
            printed[s.step_id] = len(lines)
        if not follow or run.status in FINAL:
            return
        time.sleep(0.5)


@app.command("cancel")
def cancel_cmd(
    run_ref: str = typer.Argument(..., help="Run id or a unique prefix"),
    config: Path | None = CONFIG,
) -> None:
    """Stop a running pipeline (in any process): its current step is cancelled, the rest are not run."""
    from llmdock.jobs.run_store import cancel_run

    run = cancel_run(open_store(config), run_ref)
    typer.echo(f"run {run.id[:12]}: cancelling (the runner stops within a second)")
