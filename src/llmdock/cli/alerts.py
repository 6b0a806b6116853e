"""``llmdock alerts``: the firings of the alert rules and provider canaries (docs/monitoring.md#alerts), evaluating\nthe rules now, silences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.options import CONFIG, open_store

if TYPE_CHECKING:
    from llmdock.store.monitor_rows import FiringColumns

app = typer.Typer(help="Alert rules on the stored traces: firings, checks, silences.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    limit: int = typer.Option(50, "--limit", "-n", help="How many, newest first"),
    rule: str | None = typer.Option(None, help="Only this rule (canary:NAME: a provider canary's)"),
    config: Path | None = CONFIG,
) -> None:
    """Every firing, newest first — the alert rules' and the provider canaries' (``canary:NAME``, id ``cN``):
    when, which rule on which model, the value, and where it was sent."""
    from llmdock.monitor.canary_alert import list_firings as canary_firings
    from llmdock.monitor.canary_alert import rule_name
    from llmdock.store.monitor_rows import list_firings

    store = open_store(config)
    rows: list[tuple[datetime, list[str]]] = []
    if not (rule or "").startswith("canary:"):
        for f in list_firings(store, limit=limit, rule=rule):
            rows.append((f.fired_at, [str(f.id), f.rule, f.model, f"{f.value:.4g}", f.expected, *_state(f)]))
    if rule is None or rule.startswith("canary:"):
        for c in canary_firings(store, rule.removeprefix("canary:") if rule else None, limit=limit):
            kinds = "changed: " + ", ".join(c.kinds)
            rows.append((c.fired_at, [f"c{c.id}", rule_name(c.canary), c.target, "-", kinds, *_state(c)]))
    table = Table("id", "fired (UTC)", "rule", "model", "value", "expected", "seen", "resolved", "sent to")
    for fired, cells in sorted(rows, key=lambda r: r[0], reverse=True)[:limit]:
        table.add_row(cells[0], fired.strftime("%Y-%m-%d %H:%M:%S"), *cells[1:])
    Console(width=200).print(table)


def _state(f: FiringColumns) -> list[str]:
    return [
        f"{f.repeats + 1}x",
        f.resolved_at.strftime("%H:%M:%S") if f.resolved_at else "firing",
        ", ".join(f"{name}: {outcome}" for name, outcome in f.deliveries.items()) or "-",
    ]


@app.command("check")
def check_cmd(config: Path | None = CONFIG) -> None:
    """Evaluate every rule now and send what is due (what the gateway does on each rule's schedule)."""
    from llmdock.config import load_settings
    from llmdock.monitor.alerts import evaluate, notify

    settings = load_settings(config)
    if not settings.alerts.rules:
        typer.echo("no alert rules configured (alerts.rules)")
        return
    store = open_store(config)
    due = evaluate(store, settings.alerts.rules, datetime.now(UTC))
    sent = asyncio.run(notify(store, settings.alerts, due))
    firing = sum(len(n) for n in due.values())
    typer.echo(f"{len(settings.alerts.rules)} rules evaluated, {firing} notices due")
    for channel, outcome in sent.items():
        typer.echo(f"  {channel}: {outcome}")


@app.command("silence")
def silence_cmd(
    rule: str = typer.Argument(..., help="The rule's name, or canary:NAME for a provider canary"),
    for_: str = typer.Option("1h", "--for", help="How long: 30m, 2h, 1d"),
    model: str = typer.Option("", help="Only on this model (default: every model)"),
    reason: str = typer.Option("", help="Why, for the record"),
    config: Path | None = CONFIG,
) -> None:
    """Send no notifications for a rule or a provider canary for a while (its firings are still stored)."""
    from llmdock.config import load_settings
    from llmdock.config.monitor_settings import parse_duration
    from llmdock.errors import InvalidRequest
    from llmdock.store.monitor_rows import add_silence

    settings = load_settings(config)
    if rule.startswith("canary:"):
        from llmdock.monitor.canary import get_canary

        get_canary(open_store(config), rule.removeprefix("canary:"))  # NotFound names `canary list`
    elif rule not in {r.name for r in settings.alerts.rules}:
        known = ", ".join(r.name for r in settings.alerts.rules) or "none"
        raise InvalidRequest(f"no alert rule named {rule!r} (configured: {known})", param="rule")
    try:
        seconds = parse_duration(for_)
    except ValueError as exc:
        raise InvalidRequest(f"--for: {exc}", param="for") from None
    now = datetime.now(UTC)
    until = now + timedelta(seconds=seconds)
    add_silence(open_store(config), rule, model, until, now, reason)
    typer.echo(f"{rule} silenced{' on ' + model if model else ''} until {until:%Y-%m-%d %H:%M:%S} UTC")
