"""``llmdock canary``: provider canaries (docs/monitoring.md#provider-canaries): a pinned suite asked of a hosted
model on a schedule, alerting when its answers, scores, latency, tokens or served fingerprint change."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import CONFIG, open_store

app = typer.Typer(
    help="Provider canaries: a pinned suite re-run on a schedule against a model.", no_args_is_help=True
)


def _thresholds(**given: float | None) -> dict[str, Any]:
    from pydantic import ValidationError

    from llmdock.errors import ConfigError
    from llmdock.monitor.canary_check import Thresholds

    try:
        return Thresholds.model_validate({k: v for k, v in given.items() if v is not None}).model_dump()
    except ValidationError as exc:
        first = exc.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-")
        raise ConfigError(first["msg"], where=flag) from None


@app.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="The canary's name"),
    target: str = typer.Option(..., "--target", help="The configured model to watch"),
    suite_file: Path = typer.Option(
        ..., "--suite", help="The pinned suite (YAML)", exists=True, dir_okay=False
    ),
    every: str | None = typer.Option(None, "--every", help="How often: 30s, 15m, 6h, 1d"),
    cron: str | None = typer.Option(None, "--cron", help='Or a cron expression, e.g. "0 */6 * * *"'),
    tz: str = typer.Option("UTC", "--tz", help="The cron's IANA time zone"),
    channel: list[str] = typer.Option([], "--channel", help="An alerts.channels name to notify (repeatable)"),
    min_unchanged: float | None = typer.Option(
        None, help="Alert below this share of unchanged answers [0.9]"
    ),
    alpha: float | None = typer.Option(None, help="Significance of the paired score tests [0.05]"),
    latency_ratio: float | None = typer.Option(None, help="Alert when median latency moves this factor [2]"),
    latency_floor_ms: float | None = typer.Option(None, help="…and by at least this many ms [500]"),
    tokens_change: float | None = typer.Option(None, help="Alert when mean tokens move this share [0.2]"),
    config: Path | None = CONFIG,
) -> None:
    """Keep a canary: checked now (model, suite, channels, schedule), run on its schedule by `llmdock jobs
    scheduler` (or a gateway with job_scheduler: true); its first run is the baseline."""
    from pydantic import ValidationError

    from llmdock.cli.access import who
    from llmdock.config import load_settings
    from llmdock.errors import ConfigError
    from llmdock.jobs.monitor_steps import CANARY_PIPELINE
    from llmdock.jobs.schedule_spec import ScheduleSpec
    from llmdock.jobs.schedules import add_schedule, remove_schedule
    from llmdock.monitor.canary import add_canary, check_definition, every_cron
    from llmdock.store.canary_rows import Canary

    settings = load_settings(config)
    suite = check_definition(settings, name, target, suite_file, channel)
    if (every is None) == (cron is None):
        raise ConfigError("give --every (6h) or --cron, one of them", where="--every")
    thresholds = _thresholds(
        min_unchanged=min_unchanged,
        alpha=alpha,
        latency_ratio=latency_ratio,
        latency_floor_ms=latency_floor_ms,
        tokens_change=tokens_change,
    )
    try:
        spec = ScheduleSpec(cron=every_cron(every) if every else str(cron), tz=tz)
    except (ValueError, ValidationError) as exc:
        message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(
            message.removeprefix("Value error, "), where="--every" if every else "--cron"
        ) from None
    store = open_store(config)
    actor = who().name
    schedule = add_schedule(store, CANARY_PIPELINE, {"canary": name}, spec, actor)
    row = Canary(
        name=name,
        target=target,
        suite_path=str(suite_file.resolve()),
        suite_sha256=suite.sha256,
        cron=spec.cron,
        every=every or "",
        schedule_id=schedule.id,
        channels=list(channel),
        thresholds=thresholds,
        baseline_run="",
        created_by=actor,
        created_at=datetime.now(UTC),
    )
    try:
        add_canary(store, row)
    except Exception:
        remove_schedule(store, schedule.id)
        raise
    typer.echo(
        f"canary {name}: {len(suite.cases)} cases of {suite.name} on {target}, {spec.cron} ({spec.tz}); "
        f"schedule {schedule.id[:12]}; the first run is the baseline"
    )


@app.command("list")
def list_cmd(config: Path | None = CONFIG) -> None:
    """Every canary: its model, schedule, last run and what it found."""
    from llmdock.monitor.canary import list_canaries

    table = Table("canary", "target", "every", "baseline", "last run (UTC)", "status", "unchanged", "found")
    for row, last in list_canaries(open_store(config)):
        table.add_row(
            row.name,
            row.target,
            row.every or row.cron,
            row.baseline_run[:12] or "-",
            last.finished_at.strftime("%Y-%m-%d %H:%M:%S") if last else "-",
            last.status if last else "never run",
            f"{last.unchanged:.0%}" if last and last.unchanged is not None else "-",
            ", ".join(dict.fromkeys(f["kind"] for f in last.findings)) if last else "",
        )
    Console(width=200).print(table)


@app.command("show")
def show_cmd(
    name: str = typer.Argument(...),
    limit: int = typer.Option(10, "--limit", "-n", help="Runs and firings to show"),
    config: Path | None = CONFIG,
) -> None:
    """A canary's settings, its newest runs with what they found, and its firings."""
    from llmdock.monitor.canary import canary_runs, canary_summary, get_canary
    from llmdock.monitor.canary_alert import list_firings

    store = open_store(config)
    console = Console(width=200)
    for key, value in canary_summary(get_canary(store, name)).items():
        console.print(f"{key:>13}: {value}", highlight=False)
    runs = Table("run", "finished (UTC)", "status", "unchanged", "evaluation run", "what changed")
    for r in canary_runs(store, name, limit):
        runs.add_row(
            str(r.id),
            r.finished_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.status,
            f"{r.unchanged:.0%}" if r.unchanged is not None else "-",
            r.eval_run[:12],
            "\n".join(f"{f['kind']}: {f['message']}" for f in r.findings),
        )
    console.print(runs)
    firings = Table("firing", "fired (UTC)", "seen", "resolved", "kinds", "sent to")
    for f in list_firings(store, name, limit):
        firings.add_row(
            str(f.id),
            f.fired_at.strftime("%Y-%m-%d %H:%M:%S"),
            f"{f.repeats + 1}x",
            f.resolved_at.strftime("%Y-%m-%d %H:%M:%S") if f.resolved_at else "firing",
            ", ".join(f.kinds),
            ", ".join(f"{k}: {v}" for k, v in f.deliveries.items()) or "-",
        )
    console.print(firings)


@app.command("run")
def run_cmd(
    name: str = typer.Argument(...),
    rebaseline: bool = typer.Option(False, "--rebaseline", help="Make this run the new baseline"),
    config: Path | None = CONFIG,
) -> None:
    """Run the canary now (as its schedule would), print what changed, send its alert."""
    from llmdock.config import load_settings

    settings = load_settings(config)
    row = asyncio.run(_run(settings, name, rebaseline))
    for f in row.findings:
        typer.echo(f"{f['kind']}: {f['message']}")
    unchanged = f", {row.unchanged:.0%} of answers unchanged" if row.unchanged is not None else ""
    typer.echo(f"canary {name}: {row.status}{unchanged} (evaluation run {row.eval_run[:12]})")


async def _run(settings: Any, name: str, rebaseline: bool) -> Any:
    from llmdock.cli.access import who
    from llmdock.errors import ConfigError
    from llmdock.monitor.canary import get_canary, run_canary
    from llmdock.monitor.canary_alert import send
    from llmdock.plugins import load_plugins
    from llmdock.runtime import Runtime

    plugins = load_plugins()
    runtime = Runtime(settings, plugins=plugins)
    try:
        store = runtime.store
        if store is None or runtime.store_error:
            raise ConfigError(f"canaries need the store: {runtime.store_error or 'disabled'}")
        canary = get_canary(store, name)
        outcome = await run_canary(
            store, canary, plugins.metrics, runtime, show_progress=True, by=who().name, rebaseline=rebaseline
        )
        if outcome.notice is not None:
            sent = await send(store, canary, settings.alerts.channels, outcome.notice)
            for channel, result in sent.items():
                typer.echo(f"alert to {channel}: {result}", err=True)
        return outcome.run
    finally:
        await runtime.close()


@app.command("remove")
def remove_cmd(name: str = typer.Argument(...), config: Path | None = CONFIG) -> None:
    """Remove the canary and its schedule (its runs and firings stay)."""
    from llmdock.errors import NotFound
    from llmdock.jobs.schedules import remove_schedule
    from llmdock.monitor.canary import remove_canary

    store = open_store(config)
    row = remove_canary(store, name, datetime.now(UTC))
    if row.schedule_id:
        with contextlib.suppress(NotFound):  # unless removed by hand (llmdock jobs unschedule)
            remove_schedule(store, row.schedule_id)
    typer.echo(f"canary {name} removed (schedule {row.schedule_id[:12] or '-'})")
