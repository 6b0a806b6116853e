"""``llmdock eval compare`` and ``llmdock eval gate``: paired tests between runs, and a CI gate that fails on
an absolute bound or on a regression that is significant, not on noise."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.eval_cmd import _run, app, cli_user, print_summary, write_atomic
from llmdock.cli.options import CONFIG, open_store
from llmdock.config import load_settings


def print_comparison(comparison: Any, limit: int = 20) -> None:
    console = Console()
    for t in comparison.targets:
        table = Table(title=f"{t.name}: B - A, paired by case", title_justify="left")
        for column in ("measure", "A", "B", "delta [95 % CI]", "test", "p", ""):
            table.add_column(column, justify="left" if column in ("measure", "test") else "right")
        for label, test in t.tests.items():
            d = test.delta
            table.add_row(
                label,
                f"{test.mean_a:.3f}",
                f"{test.mean_b:.3f}",
                f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]",
                f"{test.test} ({test.n_pairs} pairs)",
                f"{test.p_value:.3g}",
                "significant" if test.significant else "",
            )
        console.print(table)
    changed = comparison.changed_cases[:limit]
    if changed:
        table = Table("case", "target", "A", "B", "change", title="changed cases, regressions first")
        for c in changed:
            table.add_row(c.case_id, c.target, _verdict(c.passed_a), _verdict(c.passed_b), f"{c.delta:+.3f}")
        console.print(table)
    for u in comparison.unpaired[:limit]:
        console.print(f"unpaired: {u.target} {u.case_id} ({u.reason})", highlight=False)


def _verdict(passed: bool) -> str:
    return "pass" if passed else "fail"


@app.command("compare")
def compare_cmd(
    run_a: str = typer.Argument(..., help="The baseline run (id or prefix)"),
    run_b: str = typer.Argument(..., help="The run to compare with it"),
    alpha: float = typer.Option(0.05, help="Significance level"),
    config: Path | None = CONFIG,
) -> None:
    """Per-metric deltas with paired tests (Wilcoxon for scores, exact McNemar for pass/fail)."""
    from llmdock.evaluate.compare import compare
    from llmdock.evaluate.results import get_run, load_results

    store = open_store(config)
    a, b = get_run(store, run_a), get_run(store, run_b)
    print_comparison(compare(load_results(store, a.id), load_results(store, b.id), alpha=alpha))


@app.command("gate")
def gate_cmd(
    suite_file: Path = typer.Argument(..., help="The suite (YAML)", exists=True, dir_okay=False),
    baseline: str | None = typer.Option(
        None,
        help="What to compare with: a stored run (id or prefix), or the newest run of this suite answered by "
        "a model version (NAME@alias, NAME/3, model:NAME@alias) or a prompt version (NAME@label, prompt:NAME@label)",
    ),
    minimum: list[str] = typer.Option([], "--min", help="LABEL=VALUE bound beside the suite's `gate:`"),
    alpha: float = typer.Option(0.05, help="Significance level for regressions"),
    junit: Path | None = typer.Option(None, help="Also write the verdict as JUnit XML"),
    config: Path | None = CONFIG,
) -> None:
    """Run the suite; exit 1 when a metric is below its bound or regresses significantly against the baseline."""
    from llmdock.errors import InvalidRequest
    from llmdock.evaluate.baseline import find_baseline
    from llmdock.evaluate.compare import compare
    from llmdock.evaluate.gate import gate, junit_xml
    from llmdock.evaluate.results import load_results
    from llmdock.evaluate.suite import load_suite

    suite = load_suite(suite_file)
    bounds: dict[str, float] = dict(suite.spec.gate)
    for item in minimum:
        label, sep, value = item.rpartition("=")
        try:
            bounds[label] = float(value)
        except ValueError:
            sep = ""
        if not sep or not label:
            raise InvalidRequest(f"{item!r}: give LABEL=NUMBER", param="min")
    settings = load_settings(config)
    base = None
    if baseline is not None:
        store = open_store(config)
        found = find_baseline(store, settings.home, suite.name, baseline)
        typer.echo(found.why, err=True)
        base = load_results(store, found.run.id)
    run_id, results = asyncio.run(_run(settings, suite, None, None, cli_user()))
    print_summary(results)
    comparison = compare(base, results, alpha=alpha) if base is not None else None
    if comparison is not None:
        print_comparison(comparison)
    verdict = gate(results, bounds, comparison, alpha=alpha)
    for condition in verdict.conditions:
        mark = "[green]ok[/]  " if condition.ok else "[red]FAIL[/]"
        Console().print(f"{mark} {condition.reason}", highlight=False)
    if junit is not None:
        write_atomic(junit, junit_xml(verdict, suite.name))
    typer.echo(f"run {run_id}: gate {'passed' if verdict.ok else 'failed'}", err=True)
    raise typer.Exit(0 if verdict.ok else 1)
