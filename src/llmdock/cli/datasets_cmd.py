"""``llmdock datasets``: import files as versioned datasets, clean them step by step, compare and export them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.cli.registry_views import print_rows
from llmdock.errors import InvalidRequest

if TYPE_CHECKING:
    from llmdock.config import Settings
    from llmdock.datasets.versions import Datasets
    from llmdock.runtime import Runtime
    from llmdock.store.dataset_rows import DatasetVersion

app = typer.Typer(
    help="Datasets: import, clean, version (by content hash, with lineage), export.", no_args_is_help=True
)
ON_ERROR = typer.Option(
    "skip", "--on-error", help="skip: drop bad rows and report them; stop: fail on the first"
)


def _datasets(config: Path | None) -> Datasets:
    from llmdock.config import load_settings
    from llmdock.datasets.versions import Datasets
    from llmdock.store import Store

    settings = load_settings(config)
    return Datasets(Store(settings.resolved_database_url()), settings.home)


def print_saved(
    version: DatasetVersion, new: bool, report: dict[str, Any], as_json: bool, **extra: Any
) -> None:
    """The version a command stored (or found unchanged) and what its last step kept and dropped."""
    from llmdock.datasets.versions import view

    if as_json:
        typer.echo(json.dumps(view(version) | {"new": new} | extra, indent=2, default=str))
        return
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(report.get("dropped", {}).items())) or "none"
    for line in report.get("errors", []):
        typer.echo(line, err=True)
    state = "" if new else " (unchanged: the same rows as the latest version)"
    typer.echo(
        f"{version.name}/{version.version} @{version.digest[:12]}{state}: {version.rows} rows kept, "
        f"dropped {dropped}"
    )


@app.command("import")
def import_file(
    file: Path | None = typer.Argument(
        None, help="chat JSONL (messages), prompt/completion JSONL, CSV or Parquet"
    ),
    name: str = typer.Option(..., "--name", "-n", help="the dataset to add a version to"),
    fmt: str = typer.Option("", "--format", help="jsonl, csv or parquet (default: the file's suffix)"),
    on_error: str = ON_ERROR,
    from_traces: bool = typer.Option(False, "--from-traces", help="rows from stored chat traces, not a file"),
    model: str = typer.Option("", "--model", help="--from-traces: only this model's traces"),
    since: str = typer.Option("", "--since", help="--from-traces: ISO 8601 time or a duration ago (7d, 12h)"),
    until: str = typer.Option("", "--until", help="--from-traces: ISO 8601 time or a duration ago"),
    status: str = typer.Option("ok", "--status", help="--from-traces: ok, error, cancelled ('' for any)"),
    limit: int | None = typer.Option(None, "--limit", help="--from-traces: at most this many (oldest first)"),
    description: str = typer.Option("", "--description", "-d"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Validate a file (or stored traces) row by row and store the rows as a new version of NAME."""
    from llmdock.cli.access import who

    if on_error not in ("skip", "stop"):
        raise InvalidRequest(f"{on_error!r}: skip or stop", where="--on-error")
    if from_traces == (file is not None):
        raise InvalidRequest("give a FILE or --from-traces, not both", where="FILE")
    if file is not None:
        from llmdock.datasets.importing import load_file

        rows, report, source = load_file(file, fmt, on_error)  # type: ignore[arg-type]
        params: dict[str, Any] = {"on_error": on_error}
    else:
        from llmdock.cli.options import open_store
        from llmdock.datasets.from_traces import TraceFilter, parse_time, trace_rows

        window = {k: parse_time(v, f"--{k}") if v else None for k, v in (("since", since), ("until", until))}
        traces = TraceFilter(model=model, status=status, limit=limit, **window)
        rows, report = trace_rows(open_store(config), traces)
        source, params = traces.lineage(), {}
    if not rows:
        for line in report.errors:
            typer.echo(line, err=True)
        raise InvalidRequest(
            f"no valid rows ({report.read} read): nothing stored", where=str(file or "--from-traces")
        )
    step = {"step": "import", "params": params, **report.as_dict()}
    version, new = _datasets(config).save(
        name,
        rows,
        who(),
        lineage={"sources": [source], "steps": [step]},
        report=report.as_dict(),
        description=description,
    )
    print_saved(version, new, report.as_dict(), as_json)


@app.command("list")
def list_datasets(as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    """Every dataset with its number of versions, latest version and its rows."""
    rows = [{"name": n, "versions": c, "latest": v, "rows": r} for n, c, v, r in _datasets(config).names()]
    print_rows(rows, as_json, {k: (lambda r, k=k: r[k]) for k in ("name", "versions", "latest", "rows")})


@app.command("show")
def show(
    ref: str = typer.Argument(..., help="NAME (the latest version), NAME/VERSION or NAME@DIGEST"),
    head: int = typer.Option(0, "--head", help="also print the first N rows"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """A version: its digest, rows, lineage (sources and each step with its parameters and counts)."""
    from itertools import islice

    from llmdock.datasets.versions import view

    datasets = _datasets(config)
    version = datasets.get(ref)
    out = view(version)
    if head:
        out["head"] = list(islice(datasets.rows(version), head))
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    typer.echo(
        f"{version.name}/{version.version} @{version.digest}  {version.rows} rows, {version.size:,} bytes"
    )
    for src in version.lineage.get("sources", []):
        typer.echo(f"  source: {json.dumps(src)}")
    for step in version.lineage.get("steps", []):
        counts = f"kept {step.get('kept')}, dropped {step.get('dropped') or {}}"
        typer.echo(f"  step {step['step']} {json.dumps(step.get('params', {}))}: {counts}")
    for row in out.get("head", []):
        typer.echo(json.dumps(row, ensure_ascii=False))


@app.command("diff")
def diff(
    a: str = typer.Argument(..., help="NAME/VERSION"),
    b: str = typer.Argument(..., help="NAME/VERSION"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Rows removed, added and shared between two versions, and how their lineage differs."""
    from llmdock.datasets import versions

    datasets = _datasets(config)
    va, vb = datasets.get(a), datasets.get(b)
    out = versions.diff(datasets.rows(va), datasets.rows(vb))
    steps = [s["step"] for s in vb.lineage.get("steps", [])]
    out["steps_a"], out["steps_b"] = [s["step"] for s in va.lineage.get("steps", [])], steps
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    typer.echo(f"{a} → {b}: {out['removed']} removed, {out['added']} added, {out['common']} in both")
    typer.echo(f"  steps: {' → '.join(out['steps_a'])}  |  {' → '.join(steps)}")


@app.command("export")
def export(
    ref: str = typer.Argument(..., help="NAME, NAME/VERSION or NAME@DIGEST"),
    out: Path = typer.Argument(..., help="the file to write"),
    fmt: str = typer.Option("", "--format", help="jsonl (chat), csv or parquet (default: the file's suffix)"),
    split: str = typer.Option("", "--split", help="only rows of this split (train, validation, test)"),
    config: Path | None = CONFIG,
) -> None:
    """Write a version's rows as chat JSONL, CSV or Parquet (atomically: no partial file on a crash)."""
    from llmdock.datasets.formats import detect_format, export

    datasets = _datasets(config)
    version = datasets.get(ref)
    rows = [r for r in datasets.rows(version) if not split or r["meta"].get("split") == split]
    export(rows, out, detect_format(out, fmt))
    typer.echo(f"{len(rows)} rows of {version.name}/{version.version} written to {out}")


@app.command("clean")
def clean(
    ref: str = typer.Argument(..., help="NAME (the latest version), NAME/VERSION or NAME@DIGEST"),
    step: list[str] = typer.Option(
        [], "--step", "-s", help='a step and its parameters, e.g. "length max_tokens=512" (repeat, in order)'
    ),
    recipe: Path | None = typer.Option(None, "--recipe", "-r", help="a YAML recipe: steps: [name: {params}]"),
    save_as: str = typer.Option("", "--as", help="save under another dataset name (default: the same)"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Apply cleaning steps to a version and save the result as a new version, each step in its lineage."""
    from llmdock.cli.access import who
    from llmdock.config import load_settings
    from llmdock.datasets import clean as cleaning
    from llmdock.plugins import load_plugins

    known = load_plugins().dataset_steps
    if (recipe is None) == (not step):
        raise InvalidRequest("give --step (one or more) or --recipe, not both", where="--step/--recipe")
    specs = cleaning.recipe_specs(recipe) if recipe else cleaning.cli_specs(step, known)
    settings = load_settings(config)
    with ModelAsker(settings) as ask:
        ctx = replace(cleaning.context(settings), ask=ask)
        version, new, records = cleaning.clean(
            _datasets(config), ref, specs, known, ctx, who(), save_as=save_as
        )
    if not as_json:
        for r in records:
            dropped = ", ".join(f"{k}: {v}" for k, v in r["dropped"].items()) or "none"
            typer.echo(
                f"  {r['step']}: {r['read']} → {r['kept']} (dropped {dropped}) {json.dumps(r['figures'])}"
            )
    print_saved(version, new, version.report if new else {}, as_json, steps=records)


class ModelAsker:
    """Asks configured models through the in-process pipeline (traced like any request), for steps that
    need a model (``paraphrase``). The runtime is built on the first question and closed on exit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.runtime: Runtime | None = None

    def __enter__(self) -> ModelAsker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runtime is not None:
            self.loop.run_until_complete(self.runtime.close())
        self.loop.close()

    def __call__(self, model: str, messages: list[dict[str, str]], sampling: dict[str, Any]) -> str:
        from llmdock.backends.base import GenerationRequest, SamplingParams
        from llmdock.pipeline.context import RequestContext
        from llmdock.runtime import Runtime

        if self.runtime is None:
            self.runtime = Runtime(self.settings)
        runtime = self.runtime
        request = GenerationRequest("chat", SamplingParams(**sampling), messages=messages)
        ctx = RequestContext("chat", model, runtime.backend(model), request=request, source="cli")
        return self.loop.run_until_complete(runtime.pipeline.run(ctx)).output_text


@app.command("stats")
def stats(
    ref: str = typer.Argument(..., help="NAME, NAME/VERSION or NAME@DIGEST"),
    epsilon: float = typer.Option(
        1.0, "--epsilon", help="the privacy budget spent on this release, in total"
    ),
    column: list[str] = typer.Option(
        [], "--column", help="COLUMN=LOW,HIGH: a numeric meta column and its bounds (chars: row length)"
    ),
    config: Path | None = CONFIG,
) -> None:
    """Differentially private aggregate statistics (OpenDP): the row count, and each column's sum and mean."""
    from llmdock.datasets.dpstats import release

    columns: dict[str, tuple[float, float]] = {}
    for spec in column or ["chars=0,4000"]:
        name, _, bounds = spec.partition("=")
        try:
            lo, hi = (float(b) for b in bounds.split(","))
        except ValueError:
            raise InvalidRequest(f"{spec!r} is not COLUMN=LOW,HIGH", where="--column") from None
        columns[name] = (lo, hi)
    datasets = _datasets(config)
    version = datasets.get(ref)
    out = release(list(datasets.rows(version)), columns, epsilon)
    typer.echo(json.dumps({"dataset": f"{version.name}/{version.version}"} | out, indent=2))
