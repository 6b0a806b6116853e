"""``llmdock eval``: run a suite through the served pipeline, list and show runs, export their results."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from llmdock.cli.executors import ADDRESS, EXECUTOR, WORKERS
from llmdock.cli.options import CONFIG, open_store
from llmdock.config import load_settings

app = typer.Typer(help="Evaluation suites: run, resume, inspect and export.", no_args_is_help=True)
OnError = Literal["stop", "skip"]


@app.command("run")
def run_cmd(
    suite_file: Path = typer.Argument(..., help="The suite (YAML)", exists=True, dir_okay=False),
    resume: str | None = typer.Option(
        None, "--resume", help="Finish this run: only missing or errored cases"
    ),
    concurrency: int | None = typer.Option(None, min=1, help="Cases at once [the suite's]"),
    on_error: str = typer.Option("stop", "--on-error", help="A malformed dataset row: stop, or skip it"),
    executor: str | None = EXECUTOR,
    address: str | None = ADDRESS,
    workers: int | None = WORKERS,
    config: Path | None = CONFIG,
) -> None:
    """Run every case on every target, store each result as it finishes, print a summary."""
    from llmdock.errors import InvalidRequest
    from llmdock.evaluate.suite import load_suite
    from llmdock.jobs.executor import chosen

    if on_error not in ("stop", "skip"):
        raise InvalidRequest("--on-error is stop or skip", param="on-error")
    spec = chosen(executor, address, workers)
    settings = load_settings(config)
    suite = load_suite(suite_file, "skip" if on_error == "skip" else "stop")
    err = Console(stderr=True)
    for line in suite.skipped:
        err.print(f"[yellow]skipped[/] {line}", highlight=False)
    if spec.remote:
        from llmdock.cli.executors import eval_on_ray

        run_id, results = asyncio.run(eval_on_ray(settings, suite, spec, resume, concurrency, cli_user()))
    else:
        run_id, results = asyncio.run(_run(settings, suite, resume, concurrency, cli_user()))
    print_summary(results)
    typer.echo(f"run {run_id}: llmdock eval show {run_id[:12]}", err=True)


def cli_user() -> str:
    """Who runs the suite (``cli:<os user>``), as the audit log names CLI actions."""
    from llmdock.store.audit import cli_actor

    return cli_actor()[0]


async def _run(settings: Any, suite: Any, resume: str | None, concurrency: int | None, by: str) -> Any:
    """The suite run in this process. Only what it needs is imported: a url-only run with checks that use
    no local model asks the plugins for their metrics alone and opens the store; anything else builds the
    runtime (models, guards, the served pipeline)."""
    from llmdock.errors import ConfigError
    from llmdock.evaluate.results import load_results
    from llmdock.evaluate.runner import run
    from llmdock.plugins import load_plugins

    plugins = load_plugins()
    if remote_only(suite, plugins.metrics):  # nothing runs here but HTTP and the checks: only the store
        store = open_store_of(settings)
        try:
            outcome = await run(
                suite, store, plugins.metrics, None, resume=resume, concurrency=concurrency, by=by
            )
            return outcome.run_id, await asyncio.to_thread(load_results, store, outcome.run_id)
        finally:
            store.close()
    from llmdock.runtime import Runtime

    runtime = Runtime(settings, plugins=plugins)
    try:
        if runtime.store is None or runtime.store_error:
            raise ConfigError(f"evaluation runs need the store: {runtime.store_error or 'disabled'}")
        outcome = await run(
            suite,
            runtime.store,
            plugins.metrics,
            runtime,
            resume=resume,
            concurrency=concurrency,
            by=by,
        )
        return outcome.run_id, await asyncio.to_thread(load_results, runtime.store, outcome.run_id)
    finally:
        await runtime.close()


def remote_only(suite: Any, metrics: dict[str, Any]) -> bool:
    """Every target a URL and no check using local models: the run needs no runtime (no model, guard or
    PII engine loaded), only the store. A metric plugin that does not say (``needs_env``) is given one."""
    checks = [metrics.get(c.type) for c in suite.checks]
    return all(t.url for t in suite.spec.targets) and not any(
        f is None or getattr(f, "needs_env", True) for f in checks
    )


def open_store_of(settings: Any) -> Any:
    from llmdock.errors import ConfigError, LlmdockError
    from llmdock.privacy.privacy_policy import load_keyring
    from llmdock.store import Store

    try:
        return Store(settings.resolved_database_url(), keyring=load_keyring(settings))
    except LlmdockError as exc:
        raise ConfigError(f"evaluation runs need the store: {exc.one_line()}") from None


def print_summary(results: list[Any]) -> None:
    """Per target: cases, errors, pass rate, each check's mean, latency and tokens."""
    from llmdock.evaluate.stats import summarize

    for s in summarize(results):
        table = Table(title=f"{s.target}: {s.n_results} results, {s.errored} errored", title_justify="left")
        table.add_column("measure")
        table.add_column("mean", justify="right")
        table.add_column("95 % CI", justify="right")
        table.add_row(
            "pass rate", f"{s.pass_rate.mean:.3f}", f"{s.pass_rate.low:.3f} - {s.pass_rate.high:.3f}"
        )
        for label, m in s.metrics.items():
            table.add_row(label, f"{m.mean:.3f}", f"{m.low:.3f} - {m.high:.3f}")
        table.add_row("latency p50 / p95 (ms)", f"{s.latency_p50_ms:.0f} / {s.latency_p95_ms:.0f}", "")
        table.add_row("completion tokens (mean)", f"{s.mean_completion_tokens:.1f}", "")
        if s.flakiness is not None:
            table.add_row("flakiness (repeats disagree)", f"{s.flakiness:.3f}", "")
        Console().print(table)


@app.command("list")
def list_cmd(
    limit: int = typer.Option(20, "--limit", "-n", help="How many, newest first"),
    config: Path | None = CONFIG,
) -> None:
    """The newest runs: suite, status, results stored of those expected."""
    from llmdock.evaluate.results import list_runs

    table = Table("run", "time (UTC)", "suite", "status", "results", "by")
    for run, n in list_runs(open_store(config), limit):
        table.add_row(
            run.id[:12],
            run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            run.suite,
            run.status,
            f"{n}/{run.n_expected}",
            run.created_by,
        )
    Console().print(table)


@app.command("show")
def show_cmd(
    run_ref: str = typer.Argument(..., help="Run id or a unique prefix"),
    failed: bool = typer.Option(False, "--failed", help="Only cases that failed or errored"),
    target: str | None = typer.Option(None, help="Only this target"),
    config: Path | None = CONFIG,
) -> None:
    """A run's cases: verdict, score, each check, the answer."""
    from llmdock.evaluate.results import get_run, load_results

    store = open_store(config)
    run = get_run(store, run_ref)
    results = load_results(store, run.id)
    typer.echo(f"run {run.id} · {run.suite} · {run.status} · {len(results)}/{run.n_expected} results")
    table = Table("target", "case", "rep", "verdict", "score", "checks", "answer")
    for r in results:
        if (failed and r.passed) or (target and r.target != target):
            continue
        verdict = "error" if r.error else ("pass" if r.passed else "fail")
        checks = " ".join(f"{k}={v.value:.2f}{'' if v.passed else '✗'}" for k, v in r.scores.items())
        answer = (r.error or r.output.text).replace("\n", " ")
        table.add_row(r.target, r.case_id, str(r.repeat), verdict, f"{r.score:.2f}", checks, answer[:80])
    Console().print(table)
    print_summary(results)


@app.command("export")
def export_cmd(
    run_ref: str = typer.Argument(..., help="Run id or a unique prefix"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl or csv"),
    out: Path = typer.Option(..., "--output", "-o", help="File to write (replaced atomically)"),
    config: Path | None = CONFIG,
) -> None:
    """Every stored result of a run, one row each."""
    from llmdock.errors import InvalidRequest
    from llmdock.evaluate.results import get_run, result_rows

    if fmt not in ("jsonl", "csv"):
        raise InvalidRequest("--format is jsonl or csv", param="format")
    store = open_store(config)
    run = get_run(store, run_ref)
    rows = [_export_row(r) for r in result_rows(store, run.id)]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) if fmt == "jsonl" else _csv(rows)
    write_atomic(out, text)
    typer.echo(f"wrote {len(rows)} results to {out}", err=True)


def _export_row(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "target": r.target,
        "case_id": r.case_id,
        "repeat": r.repeat,
        "passed": r.passed,
        "score": r.score,
        "error": r.error,
        "input": r.input.get("input"),
        "messages": r.input.get("messages"),
        "expected": r.input.get("expected"),
        "output": r.output,
        "scores": r.scores,
        "latency_ms": r.latency_ms,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost": r.cost,
        "trace_id": r.trace_id,
        "served": r.served,
    }


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})
    return buf.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
