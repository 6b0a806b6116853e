"""``llmdock release``: canary releases of a registered model version (start, status, promote, rollback, list).

A release is an A/B experiment on the model's traffic (``llmdock experiments`` lists it too). The CLI writes
to the store; running gateways start (or stop) sending the share to the challenger within a second, and
apply the promote and rollback rules every few seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from llmdock.cli.access import who
from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.cli.registry_views import print_rows

app = typer.Typer(help="Canary releases: a share of a model's traffic to a new registry version.",
                  no_args_is_help=True)  # fmt: skip


def _book(config: Path | None) -> Any:
    from llmdock.config import load_settings
    from llmdock.experiments.book import ExperimentBook
    from llmdock.store import Store

    settings = load_settings(config)
    return ExperimentBook(Store(settings.resolved_database_url())), settings


@app.command("start")
def start(
    model: str = typer.Argument(..., help="the served model (its model_path: models:/NAME@alias)"),
    challenger: str = typer.Option(..., help="the version to release: models:/NAME/N or models:/NAME@alias"),
    share: int | None = typer.Option(None, help="percent of the model's traffic the challenger gets (10)"),
    ramp: str | None = typer.Option(None, help="shares to climb, e.g. 5,10,25,50 (instead of --share)"),
    step_after: str | None = typer.Option(
        None, help="with --ramp: next step after N challenger requests (200) or a time (30m); never if worse"
    ),
    promote_when: str | None = typer.Option(None, help="rule, e.g. 'requests >= 200 and not worse'"),
    rollback_when: str | None = typer.Option(None, help="rule, e.g. 'worse or error_rate > 0.05'"),
    sticky: str = typer.Option("user", help="user, session or key: who always sees the same version"),
    config: Path | None = CONFIG,
) -> None:
    """Start sending a share of MODEL's traffic to the challenger (audited); gateways follow within a second."""
    from llmdock.experiments.release import start_release
    from llmdock.registry import ModelRegistry

    book, settings = _book(config)
    request = {"model": model, "challenger": challenger, "share": share, "promote_when": promote_when,
               "rollback_when": rollback_when, "sticky": sticky, "ramp": ramp, "step_after": step_after}  # fmt: skip
    row = start_release(book, ModelRegistry(book.store, settings.home), settings.all_models(), request, who())
    rel = row.guard["release"]
    typer.echo(
        f"release {row.name}: {rel['share']}% of {model} to {rel['registered']}/{rel['version']} "
        f"(now {rel['registered']}@{rel['alias']} = {rel['stable_version']})\n"
        f"  promote when: {rel['promote_when']}\n  rollback when: {rel['rollback_when']}"
    )
    if rel.get("ramp"):
        typer.echo(f"  ramp: {' -> '.join(f'{s}%' for s in rel['ramp'])}, a step after {rel['step_after']} "
                   "while not worse; the promote rule is read at the last step")  # fmt: skip


@app.command("status")
def status(model: str = typer.Argument(...), as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    """The model's last release: each version's requests, errors, guard blocks, latency, feedback; the
    challenger against the stable version (sequential test); what the rules say now."""
    from rich.console import Console
    from rich.table import Table

    from llmdock.experiments.release import latest_release, release_view

    book, _ = _book(config)
    view = release_view(book, latest_release(book, model))
    if as_json:
        typer.echo(json.dumps(view, indent=2, default=str))
        return
    typer.echo(f"{view['name']}: {view['status']}  {view['share']}% of {view['model']} to "
               f"{view['registered']}/{view['version']} (stable {view['stable_version']})  {view['reason']}")  # fmt: skip
    if view.get("ramp"):
        typer.echo(f"ramp: {' -> '.join(f'{s}%' for s in view['ramp'])}, at step {view['step'] + 1} of "
                   f"{len(view['ramp'])} (a step after {view['step_after']})")  # fmt: skip
    typer.echo(f"rules now: {view['rules_now']}")
    table = Table("version", "requests", "errors", "guard blocks", "p50 ms", "p95 ms", "feedback")
    for v in view["variants"]:
        table.add_row(v["name"], str(v["requests"]), str(v["errors"]), str(v["guard_blocked"]),
                      _num(v["latency_p50_ms"]), _num(v["latency_p95_ms"]), str(v["feedback"]))  # fmt: skip
    Console().print(table)
    for d in view["differences"]:
        mark = "significant" if d["significant"] else f"not yet (about {d['samples_needed']} more each)"
        typer.echo(
            f"  {d['measure']}: {d['mean_a']:.3g} -> {d['mean_b']:.3g}, p={d['p_sequential']:.3g} {mark}"
        )


def _num(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.0f}"


REASON = typer.Option("by hand", help="kept with the release and in the audit log")


@app.command("rollback")
def rollback_cmd(
    model: str = typer.Argument(...), reason: str = REASON, config: Path | None = CONFIG
) -> None:
    """End the model's running release now; the alias stays, gateways drop the challenger within a second."""
    rel = _end(model, "rollback", reason, config)
    typer.echo(f"release {rel['name']} rolled back: {model} serves {rel['registered']}@{rel['alias']} only")


@app.command("promote")
def promote_cmd(model: str = typer.Argument(...), reason: str = REASON, config: Path | None = CONFIG) -> None:
    """Promote the model's running release now: its alias moves to the challenger; gateways follow it."""
    rel = _end(model, "promote", reason, config)
    typer.echo(
        f"release {rel['name']} promoted: {rel['registered']}@{rel['alias']} -> version {rel['version']}"
    )


def _end(model: str, action: str, reason: str, config: Path | None) -> dict[str, Any]:
    from llmdock.experiments import release

    book, _ = _book(config)
    row = getattr(release, action)(book, release.running_release(book, model), who(), reason)
    return {"name": row.name, **row.guard["release"]}


@app.command("list")
def list_cmd(as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    """Every release, newest first."""
    from llmdock.experiments.release import releases

    book, _ = _book(config)
    rows = [{"name": r.name, "status": r.status, **r.guard["release"], "reason": r.guard.get("reason", "")}
            for r in releases(book)]  # fmt: skip
    columns = {
        k: (lambda r, k=k: str(r[k])) for k in ("name", "status", "model", "challenger", "share", "reason")
    }
    print_rows(rows, as_json, columns)
