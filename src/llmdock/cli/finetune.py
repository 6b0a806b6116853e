"""``llmdock finetune``: LoRA on an embedded model, exported to quantized GGUF and registered with lineage."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from llmdock.cli.executors import ADDRESS, EXECUTOR, WORKERS
from llmdock.cli.options import AS_JSON, CONFIG

app = typer.Typer(
    help="Fine-tuning: LoRA on an embedded model → merged, GGUF, quantized, registered with lineage.",
    no_args_is_help=True,
)


@app.command("run")
def run(
    file: Path = typer.Argument(..., help="the run's config (finetune.yaml: name, base_model, dataset…)"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run's newest checkpoint"),
    restart: bool = typer.Option(False, "--restart", help="drop the run's checkpoints and start over"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Train, merge, convert, quantize, measure and register; one line per registered version."""
    from llmdock.cli.access import who
    from llmdock.config import load_settings
    from llmdock.finetune.run import run_finetune

    outcome = run_finetune(file, load_settings(config), who(), resume=resume, restart=restart)
    t = outcome.training
    if as_json:
        views = [
            {"version": f"{v.name}/{v.version}", "lineage": v.lineage, "metrics": v.metrics}
            for v in outcome.versions
        ]
        typer.echo(json.dumps({"run": outcome.run_id, "versions": views}, indent=2, default=str))
        return
    first, last = (t.losses[0][1], t.losses[-1][1]) if t.losses else (float("nan"), float("nan"))
    typer.echo(
        f"run {outcome.run_id}: {t.steps} steps (resumed from {t.resumed_from}) in {t.seconds:.1f} s, "
        f"loss {first:.3f} → {last:.3f}, {t.tokens_per_s:.0f} tokens/s, peak RSS {t.peak_rss / 2**20:.0f} MiB"
    )
    f16 = outcome.exported.measures["f16"]
    typer.echo(f"  f16 GGUF: {f16['size'] / 2**20:.1f} MiB, {f16['tokens_per_s']} tokens/s")
    for v in outcome.versions:
        typer.echo(
            f"models:/{v.name}/{v.version} ({v.lineage['quantization']}, {v.format}): {v.size / 2**20:.1f} MiB"
            + (f", {v.metrics['tokens_per_s']} tokens/s" if "tokens_per_s" in v.metrics else "")
        )


@app.command("search")
def search(
    file: Path = typer.Argument(..., help="the run's config, with a search: section (search.space)"),
    trials: int = typer.Option(10, "--trials", min=1, help="finished trials the study should hold in all"),
    restart: bool = typer.Option(False, "--restart", help="drop the study and start it over"),
    executor: str | None = EXECUTOR,
    address: str | None = ADDRESS,
    workers: int | None = WORKERS,
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """optuna over search.space on the validation loss (pruning poor trials); the study is kept in the store,
    so running it again continues it; the best trial's values are written to NAME.best.yaml. With
    --executor ray, trials run on the cluster's workers at once, one per worker, sharing the study."""
    from llmdock.config import load_settings
    from llmdock.finetune.search import run_search
    from llmdock.jobs.executor import chosen

    settings = load_settings(config)
    spec = chosen(executor, address, workers)
    run_trials = None
    if spec.remote:
        from llmdock.jobs.ray_search import search_on_ray

        run_trials = search_on_ray(file.resolve(), settings, spec)
    outcome = run_search(file, settings, trials, restart=restart, run_trials=run_trials)
    if as_json:
        view = {
            "study": outcome.study,
            "trials": [{"number": n, "state": s, "value": v} for n, s, v in outcome.trials],
            "best": {"params": outcome.best_params, "value": outcome.best_value},
            "best_file": str(outcome.best_file),
        }
        typer.echo(json.dumps(view, indent=2))
        return
    for number, state, value in outcome.trials:
        typer.echo(
            f"trial {number}: {state}" + (f", validation loss {value:.4f}" if value is not None else "")
        )
    typer.echo(
        f"study {outcome.study}: best validation loss {outcome.best_value:.4f} with {outcome.best_params}; "
        f"written to {outcome.best_file} (llmdock finetune run {outcome.best_file})"
    )


@app.command("converter")
def converter(config: Path | None = CONFIG) -> None:
    """Fetch (once) the GGUF converter that ships with the installed llama-cpp-python, and say where it is."""
    from llmdock.config import load_settings
    from llmdock.finetune.convert import converter_source, ensure_converter

    tools = ensure_converter(load_settings(config).home)
    source = converter_source(tools)
    typer.echo(f"{tools} (from {source.get('sdist', '?')}, sha256 {source.get('sha256', '?')[:12]})")


@app.command("lineage")
def lineage(
    match: list[str] = typer.Argument(
        ..., help="KEY=VALUE (dataset_version=…, training_run=…, hyperparameters.lora.r=8); values are YAML"
    ),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Registered versions whose lineage matches every KEY=VALUE: what was made from a dataset, a run…"""
    import yaml

    from llmdock.config import load_settings
    from llmdock.errors import InvalidRequest
    from llmdock.registry import ModelRegistry
    from llmdock.store import Store

    wanted = {}
    for item in match:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"{item!r} is not KEY=VALUE", param="match")
        wanted[key] = yaml.safe_load(value)
    settings = load_settings(config)
    store = Store(settings.resolved_database_url())
    try:
        rows = ModelRegistry(store, settings.home).with_lineage(**wanted)
    finally:
        store.close()
    if as_json:
        views = [
            {"version": f"{r.name}/{r.version}", "lineage": r.lineage, "metrics": r.metrics} for r in rows
        ]
        typer.echo(json.dumps(views, indent=2, default=str))
        return
    for r in rows:
        typer.echo(f"models:/{r.name}/{r.version}  {r.lineage.get('training_run', '')}  {r.description}")
