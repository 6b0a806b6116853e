"""``llmdock experiments``: A/B experiments on live traffic (create, list, status, conclude, stop).

The CLI writes to the store; running gateways pick changes up within a second. Errors are one line
(``variant 'b': prompt template 'support' has no version 9``) and leave nothing half-created.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from llmdock.cli.access import who
from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.cli.registry_views import print_rows
from llmdock.errors import InvalidRequest

app = typer.Typer(
    help="A/B experiments: variants of prompts or models on live traffic.", no_args_is_help=True
)


def _book(config: Path | None) -> Any:
    from llmdock.config import load_settings
    from llmdock.experiments.book import ExperimentBook
    from llmdock.store import Store

    settings = load_settings(config)
    return ExperimentBook(Store(settings.resolved_database_url())), settings


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{option} {text!r}: give an ISO 8601 time (2026-12-07T09:00Z)", param=option
        ) from None


@app.command("create")
def create(
    name: str = typer.Argument(..., help="experiment name"),
    variant: list[str] = typer.Option(..., "--variant", "-v", help="NAME=prompt:T@V and/or model:M (repeat)"),
    weights: str | None = typer.Option(None, help="percent per variant, e.g. 50,50 (default: even)"),
    sticky: str = typer.Option("user", help="user, session or key: who always sees the same variant"),
    match: list[str] = typer.Option(
        [], help="prompt=T, model=M or route=/v1/... (default: the variants' template)"
    ),
    start: str | None = typer.Option(None, help="ISO 8601 start (default: now)"),
    end: str | None = typer.Option(None, help="ISO 8601 end (default: until concluded)"),
    label: str = typer.Option("production", help="the prompt label the winner gets on conclude"),
    max_error_rate: float | None = typer.Option(None, min=0, max=1, help="guard rail: stop a variant above"),
    max_block_rate: float | None = typer.Option(None, min=0, max=1, help="guard rail: guard-block share"),
    max_p50_ms: float | None = typer.Option(None, min=0, help="guard rail: median latency bound"),
    min_samples: int = typer.Option(20, min=1, help="requests a variant needs before its guard rails apply"),
    config: Path | None = CONFIG,
) -> None:
    """Start an experiment (audited); running gateways begin assigning within a second."""
    from llmdock.experiments.spec import (
        STICKY,
        ExperimentSpec,
        GuardRails,
        parse_match,
        parse_variant,
        parse_weights,
    )

    if sticky not in STICKY:
        raise InvalidRequest(f"sticky {sticky!r}: one of {', '.join(STICKY)}", param="sticky")
    sticky_by = STICKY[STICKY.index(sticky)]  # typed as the Literal
    variants = [parse_variant(v) for v in variant]
    for v, w in zip(variants, parse_weights(weights, len(variants)), strict=True):
        v.weight = w
    guard = GuardRails(max_error_rate, max_block_rate, max_p50_ms, min_samples)
    spec = ExperimentSpec(
        name,
        variants,
        sticky_by,
        parse_match(match),
        guard,
        _when(start, "start"),
        _when(end, "end"),
        label,
    )
    book, settings = _book(config)
    row = book.create(spec, who(), settings.all_models())
    parts = ", ".join(f"{v['name']}={_describe(v)} ({v['weight']}%)" for v in row.variants)
    typer.echo(f"experiment {row.name} running on {row.match}: {parts}; sticky by {row.sticky}")


def _describe(v: dict[str, Any]) -> str:
    from llmdock.experiments.spec import VariantSpec

    return VariantSpec.from_json(v).describe()


@app.command("list")
def list_cmd(as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    """Every experiment, newest first."""
    book, _ = _book(config)
    rows = [
        {
            "name": r.name,
            "status": r.status,
            "match": r.match,
            "variants": [v | {"describe": _describe(v)} for v in r.variants],
            "sticky": r.sticky,
            "winner": r.winner,
            "starts_at": r.starts_at.isoformat(),
            "ends_at": r.ends_at.isoformat() if r.ends_at else None,
        }
        for r in book.rows()
    ]
    columns = {
        "name": lambda r: r["name"],
        "status": lambda r: r["status"] + (f" ({r['winner']})" if r["winner"] else ""),
        "match": lambda r: ",".join(f"{k}={v}" for k, v in r["match"].items()),
        "variants": lambda r: "  ".join(
            f"{v['name']}={v['describe']} {v['weight']}%" + (" stopped" if v["stopped"] else "")
            for v in r["variants"]
        ),
        "sticky": lambda r: r["sticky"],
        "since": lambda r: r["starts_at"][:19].replace("T", " "),
    }
    print_rows(rows, as_json, columns)


@app.command("stop")
def stop(name: str = typer.Argument(...), config: Path | None = CONFIG) -> None:
    """End the split without a winner (labels stay where they are; audited)."""
    book, _ = _book(config)
    book.stop(name, who())
    typer.echo(f"experiment {name} stopped")


@app.command("conclude")
def conclude(
    name: str = typer.Argument(...),
    winner: str | None = typer.Option(None, help="the variant that won"),
    auto: bool = typer.Option(False, "--auto", help="conclude only if the primary comparison is significant"),
    config: Path | None = CONFIG,
) -> None:
    """Move the prompt label (and the alias of the registered model it serves) to the winner (audited); end
    the split. Running gateways serve the winner within a second."""
    from llmdock.experiments.book import served_versions
    from llmdock.experiments.report import auto_winner

    if (winner is None) == (not auto):
        raise InvalidRequest("give --winner VARIANT or --auto", param="winner")
    book, settings = _book(config)
    if auto:
        winner, why = auto_winner(book.store, book.get(name))
        if winner is None:
            typer.echo(f"experiment {name} not concluded: {why}")
            raise typer.Exit(1)
        typer.echo(why)
    assert winner is not None
    served = served_versions(settings.all_models(), book.store)
    row = book.conclude(name, winner, who(), served)
    v = next(v for v in row.variants if v["name"] == winner)
    label = row.guard.get("label")
    moved = f"; {v['prompt']}@{label} -> version {v['prompt_version']}" if v.get("prompt") else ""
    if v.get("model") in served:
        registered, version = served[v["model"]]
        moved += f"; model {registered}@{label} -> version {version}"
    typer.echo(f"experiment {name} concluded: winner {winner}{moved}")


def _num(value: float, fmt: str = ".3g") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


@app.command("status")
def status(name: str = typer.Argument(...), as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    """Per variant: requests, feedback, latency, tokens, cost, guard verdicts; each against the control."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from llmdock.experiments.report import experiment_report

    book, _ = _book(config)
    report = experiment_report(book.store, book.get(name))
    if as_json:
        data = asdict(report)
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    console = Console()
    head = f"experiment {report.name}: {report.status}" + (
        f", winner {report.winner}" if report.winner else ""
    )
    console.print(head)
    table = Table(
        "variant",
        "requests",
        "errors",
        "blocked",
        "p50 ms",
        "p95 ms",
        "tokens",
        "cost",
        "scores",
        "online eval",
    )
    for v in report.variants:
        scores, online = (
            "  ".join(
                f"{k} {s['mean']:.3g} [{_num(s['low'])}, {_num(s['high'])}] n={s['n']}"
                for k, s in v[field].items()
            )
            for field in ("scores", "online_eval")
        )
        table.add_row(
            f"{v['name']} {v['variant']} {v['weight']}%"
            + (f" STOPPED: {v['stopped']}" if v["stopped"] else ""),
            str(v["requests"]),
            f"{v['errors']} ({_num(v['error_rate'], '.1%')})",
            str(v["guard_blocked"]),
            _num(v["latency_p50_ms"], ".0f"),
            _num(v["latency_p95_ms"], ".0f"),
            _num(v["mean_tokens"], ".1f"),
            _num(v["cost"], ".4g"),
            scores or "-",
            online or "-",
        )
    console.print(table)
    diffs = Table(
        "vs control", "measure", "A", "B", "B - A [95% CS]", "p seq", "fixed test", "p", "sig", "more n"
    )
    for variant, found in report.differences.items():
        for d in found:
            diffs.add_row(
                variant, d.measure, _num(d.mean_a), _num(d.mean_b),
                f"{d.delta:+.3g} [{d.low:+.3g}, {d.high:+.3g}]", _num(d.p_sequential), d.test,
                _num(d.p_fixed), "yes" if d.significant else "no", str(d.samples_needed),
            )  # fmt: skip
    console.print(diffs)
    console.print(
        f"significance: {report.test}; peeking is safe (false positives stay <= 5 %). "
        "'more n': per variant, until a decision at the difference seen (fixed-horizon 80 % power, or "
        "the sequential test's crossing, whichever is later)."
    )


def _register_offline() -> None:
    from llmdock.cli.experiments_offline import offline

    app.command("offline")(offline)


_register_offline()
