"""``llmdock jobs schedule/schedules/unschedule/scheduler``: pipelines on a cron expression in a time zone,
kept in the store, fired once per slot by however many schedulers run (``llmdock.jobs.schedules``)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.jobs import app, run_pipeline_file
from llmdock.cli.options import CONFIG, open_store


@app.command("schedule")
def schedule_cmd(
    pipeline_file: Path = typer.Argument(..., help="The pipeline (YAML)", exists=True, dir_okay=False),
    cron: str | None = typer.Option(None, "--cron", help='e.g. "0 3 * * *" (default: the file\'s schedule)'),
    tz: str | None = typer.Option(None, "--tz", help="IANA time zone, e.g. Europe/Berlin (default UTC)"),
    misfire: str | None = typer.Option(
        None, "--misfire", help="skip (default) or run_once: a slot found late"
    ),
    grace_s: float | None = typer.Option(None, "--grace", help="Seconds a slot may be late and still run"),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE for every scheduled run"),
    config: Path | None = CONFIG,
) -> None:
    """Keep a schedule for the pipeline (checked now, as `jobs run` would, and again at every slot)."""
    from pydantic import ValidationError

    from llmdock.cli.access import who
    from llmdock.cli.prompts import parse_vars
    from llmdock.errors import ConfigError
    from llmdock.jobs.pipeline_spec import load_pipeline
    from llmdock.jobs.schedule_spec import ScheduleSpec
    from llmdock.jobs.schedules import add_schedule
    from llmdock.plugins import load_plugins

    params = parse_vars(param)
    pipeline = load_pipeline(pipeline_file, load_plugins().job_steps, params)
    flags = {"cron": cron, "tz": tz, "misfire": misfire, "grace_s": grace_s}
    base = pipeline.schedule.model_dump() if pipeline.schedule else {}
    given = base | {k: v for k, v in flags.items() if v is not None}
    if "cron" not in given:
        raise ConfigError(f"give --cron, or a schedule: block in {pipeline_file}", where="--cron")
    try:
        spec = ScheduleSpec.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = {"grace_s": "grace"}.get(str(first["loc"][0]), str(first["loc"][0]))
        raise ConfigError(first["msg"].removeprefix("Value error, "), where=f"--{flag}") from None
    row = add_schedule(open_store(config), pipeline_file, params, spec, who().name)
    typer.echo(f"schedule {row.id[:12]}: {row.cron} ({row.tz}, misfire {row.misfire}) runs {row.path}")


@app.command("schedules")
def schedules_cmd(config: Path | None = CONFIG) -> None:
    """Every schedule: its cron and time zone, the next slot, the last one claimed and its run."""
    from llmdock.jobs.schedules import list_schedules

    table = Table(
        "schedule", "cron", "tz", "misfire", "next (its tz)", "last slot", "status", "run", "pipeline"
    )
    for v in list_schedules(open_store(config)):
        s, last = v.schedule, v.last
        table.add_row(
            s.id[:12],
            s.cron,
            s.tz,
            s.misfire,
            v.next_at.strftime("%Y-%m-%d %H:%M:%S %Z"),
            last.slot.strftime("%Y-%m-%d %H:%M:%S UTC") if last else "",
            last.status if last else "",
            last.run_id[:12] if last else "",
            s.path,
        )
    Console().print(table)


@app.command("unschedule")
def unschedule_cmd(
    schedule_ref: str = typer.Argument(..., help="Schedule id or a unique prefix"),
    config: Path | None = CONFIG,
) -> None:
    """Remove a schedule (its runs stay)."""
    from llmdock.jobs.schedules import remove_schedule

    row = remove_schedule(open_store(config), schedule_ref)
    typer.echo(f"schedule {row.id[:12]} removed ({row.cron}, {row.path})")


@app.command("scheduler")
def scheduler_cmd(
    tick: float = typer.Option(1.0, "--tick", help="Seconds between looks for due slots"),
    seconds: float | None = typer.Option(None, "--for", help="Stop after this many seconds (default: never)"),
    config: Path | None = CONFIG,
) -> None:
    """Fire the stored schedules until stopped (Ctrl-C or SIGTERM lets running pipelines finish). Any number
    may run against one store: each slot runs once."""
    from llmdock.config import load_settings

    settings = load_settings(config)
    asyncio.run(_scheduler(settings, tick, seconds))


async def _scheduler(settings: Any, tick: float, seconds: float | None) -> None:
    from llmdock.cli.access import who
    from llmdock.cli.eval_cmd import open_store_of
    from llmdock.errors import LlmdockError
    from llmdock.jobs.pipeline_spec import load_pipeline
    from llmdock.jobs.schedules import scheduler_loop
    from llmdock.plugins import load_plugins
    from llmdock.store.jobs_rows import JobSchedule

    owner = f"{socket.gethostname()}:{os.getpid()}"
    plugins, actor, err = load_plugins(), who(), Console(stderr=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if seconds is not None:
        loop.call_later(seconds, stop.set)

    async def fire(row: JobSchedule, slot: datetime) -> tuple[str, str]:
        err.print(f"{slot.isoformat()} schedule {row.id[:12]}: {row.path}", highlight=False)
        try:
            pipeline = load_pipeline(Path(row.path), plugins.job_steps, dict(row.params))
        except (
            LlmdockError
        ) as exc:  # the file changed since: the slot is recorded as invalid, the loop goes on
            err.print(f"schedule {row.id[:12]}: {exc.one_line()}", highlight=False)
            return "", "invalid"
        run = await run_pipeline_file(settings, plugins, pipeline, actor, prefix=f"[{row.id[:8]}] ")
        return run.id, str(run.status)

    store = open_store_of(settings)
    err.print(f"scheduler {owner}: every {tick:g} s", highlight=False)
    try:
        await scheduler_loop(store, fire, owner=owner, stop=stop, tick_s=tick)
    finally:
        store.close()
