"""``llmdock experiments offline NAME --suite suite.yaml``: an experiment's variants over a dataset first.

Before (or instead of) live traffic, the variants run as the targets of an evaluation suite: each variant
replaces the suite's first target's prompt and/or model (everything else, such as sampling and pipeline,
comes from that target), the run is stored like any ``llmdock eval run``, and every other variant is compared
with the first, paired by case, with the same tests as ``llmdock eval compare``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import typer

from llmdock.cli.options import CONFIG


def offline(
    name: str = typer.Argument(..., help="experiment name"),
    suite_file: Path = typer.Option(
        ..., "--suite", exists=True, dir_okay=False, help="evaluation suite (YAML)"
    ),
    concurrency: int | None = typer.Option(None, min=1, help="cases at once [the suite's]"),
    alpha: float = typer.Option(0.05, help="significance level"),
    config: Path | None = CONFIG,
) -> None:
    """Run the experiment's variants over a suite's dataset and compare them, paired by case."""
    from llmdock.cli.access import who
    from llmdock.cli.eval_cmd import _run, print_summary
    from llmdock.cli.eval_gate import print_comparison
    from llmdock.config import load_settings
    from llmdock.evaluate.compare import compare
    from llmdock.evaluate.suite import load_suite

    settings = load_settings(config)
    suite = load_suite(suite_file)
    variants = _variants(settings, name)
    targets = variant_targets(suite.spec.targets[0], variants)
    suite = dataclasses.replace(suite, spec=suite.spec.model_copy(update={"targets": targets}))
    run_id, results = asyncio.run(_run(settings, suite, None, concurrency, who().name))
    print_summary(results)
    baseline = [r for r in results if r.target == targets[0].name]
    for target in targets[1:]:
        mine = [r for r in results if r.target == target.name]
        print_comparison(compare(baseline, mine, alpha=alpha))
    typer.echo(f"run {run_id}: llmdock eval show {run_id[:12]}", err=True)


def _variants(settings: Any, name: str) -> list[Any]:
    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.spec import VariantSpec
    from llmdock.store import Store

    store = Store(settings.resolved_database_url())
    try:
        row = ExperimentBook(store).get(name)
        return [VariantSpec.from_json(v) for v in row.variants]
    finally:
        store.close()


def variant_targets(base: Any, variants: list[Any]) -> list[Any]:
    """One suite target per variant: the base target with the variant's prompt version and/or model."""
    out = []
    for v in variants:
        update: dict[str, Any] = {"name": v.name}
        if v.prompt:
            update["prompt"] = (
                f"{v.prompt}/{v.prompt_version}" if v.prompt_version else f"{v.prompt}@{v.prompt_ref}"
            )
        if v.model:
            update["model"] = v.model
        out.append(base.model_copy(update=update))
    return out
