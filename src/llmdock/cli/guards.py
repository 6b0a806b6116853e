"""``llmdock guards``: train the guard classifiers, and try the configured detectors on a text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmdock.cli.options import CONFIG
from llmdock.config import load_settings

app = typer.Typer(help="Input and output guardrails.", no_args_is_help=True)


@app.command("train")
def train_cmd(
    retrain: bool = typer.Option(False, "--retrain", help="Train again even when cached weights exist"),
    config: Path | None = CONFIG,
) -> None:
    """Train the guard classifiers from the labelled data llmdock ships (cached; deterministic)."""
    from llmdock.guards.training import CATEGORIES, TASKS, ensure_model

    settings = load_settings(config)
    model_dir = settings.guards.model_dir or settings.home / "guards"
    table = Table("classifier", "rows", "positives", "threshold", "validation recall", "seconds", "sources")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        for task, category in [(t, None) for t in TASKS] + [("toxicity", c) for c in CATEGORIES]:
            name = f"{task}: {category}" if category else task
            step = progress.add_task(f"training {name}", total=None)
            model = ensure_model(model_dir, task, retrain=retrain, category=category)
            progress.remove_task(step)
            m = model.manifest
            table.add_row(
                name,
                str(m["rows"]),
                str(m["positives"]),
                f"{model.threshold:.3f}",
                f"{m['validation']['recall']:.3f}",
                str(m["seconds"]),
                str(len(m["sources"])),
            )
    console = Console()
    console.print(table)
    console.print(f"cached in {model_dir} (a .json manifest beside each model names its data and licenses)")


@app.command("check")
def check_cmd(
    text: str = typer.Argument(..., help="The text to check"),
    output: bool = typer.Option(False, "--output", help="Check it as an answer (guard_out detectors)"),
    role: str = typer.Option("user", help="The chat role of an input text (user, tool, system …)"),
    config: Path | None = CONFIG,
) -> None:
    """Run the configured detectors on one text and print each verdict."""
    from llmdock.guards.base import Direction, GuardText
    from llmdock.guards.engine import check
    from llmdock.guards.policy import DetectorEnv, build_policies
    from llmdock.plugins import load_plugins

    settings = load_settings(config)
    model_dir = settings.guards.model_dir or settings.home / "guards"
    policies = build_policies(settings, load_plugins().detectors, DetectorEnv(model_dir))
    direction: Direction = "output" if output else "input"
    entries = policies.base[direction]
    item = GuardText(text, "answer" if output else role, direction)
    outcomes = asyncio.run(check(list(entries.values()), [item]))
    table = Table("detector", "score", "threshold", "flagged", "would", "layer", "spans")
    for o in outcomes:
        spans = ", ".join(f"{f.label}@{f.start}-{f.end}" for _, v in o.hits for f in v.findings)
        table.add_row(
            o.entry.name,
            f"{o.verdict.score:.3f}",
            f"{o.entry.policy.threshold:.2f}",
            "yes" if o.flagged else "no",
            o.entry.policy.action if o.flagged else "-",
            o.verdict.layer or o.error,
            spans,
        )
    Console().print(table)
