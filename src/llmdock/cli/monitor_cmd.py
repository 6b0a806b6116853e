"""``llmdock monitor``: how a model's traffic drifted between a reference window and the current one (``drift``,
with a stored reference: ``reference set``), and its online-evaluation scores per day (``scores``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from llmdock.cli.options import CONFIG

if TYPE_CHECKING:
    from llmdock.config import Settings
    from llmdock.monitor.drift import Embed
    from llmdock.monitor.reference import StoredReference
    from llmdock.routing.router import ModelRoute
    from llmdock.runtime import Runtime

app = typer.Typer(
    help="Monitoring: drift of a model's traffic, online-evaluation scores.", no_args_is_help=True
)
reference_app = typer.Typer(help="The stored drift reference of a model.", no_args_is_help=True)
app.add_typer(reference_app, name="reference")


def _seconds(**options: str) -> list[float]:
    from llmdock.config.monitor_settings import parse_duration
    from llmdock.errors import InvalidRequest

    try:
        return [parse_duration(v) for v in options.values()]
    except ValueError as exc:
        raise InvalidRequest(f"--{'/--'.join(options)}: {exc}") from None


async def _embed(runtime: Runtime, settings: Settings, wanted: bool) -> Embed | None:
    if not (wanted and settings.default_embedding_model):
        return None
    route = runtime.backend(settings.default_embedding_model)
    if not route.loaded:
        await route.start()
    return _embedder(route)


@app.command("drift")
def drift_cmd(
    model: str = typer.Option(..., "--model", "-m", help="The model whose traces are compared"),
    reference: str | None = typer.Option(
        None, help="The reference window, just before the current one [the stored reference, else 7d]"
    ),
    current: str = typer.Option("1d", help="The current window, ending now"),
    html: Path | None = typer.Option(None, help="Write the report here [drift-MODEL.html]"),
    embeddings: bool = typer.Option(True, help="Compare the texts' meaning (embedding model)"),
    permutations: int = typer.Option(200, min=10, help="Permutations for the embedding test's p-value"),
    max_samples: int = typer.Option(300, min=5, help="Texts per window embedded at most"),
    alpha: float = typer.Option(0.05, min=0.0, max=1.0, help="Drift when the adjusted p-value is below"),
    config: Path | None = CONFIG,
) -> None:
    """Lengths, tokens, error, guard-block and refusal rates, languages, topics, online-evaluation scores and
    input/output meaning: a table and an HTML report."""
    from llmdock.config import load_settings
    from llmdock.errors import InvalidRequest
    from llmdock.monitor.drift import DriftRow, Summary, Window, drift, load_window
    from llmdock.monitor.drift_report import render
    from llmdock.monitor.reference import get_reference
    from llmdock.runtime import Runtime

    (cur_s,) = _seconds(current=current)
    settings = load_settings(config)
    runtime = Runtime(settings)
    assert runtime.store is not None
    now = datetime.now(UTC)
    split = now - timedelta(seconds=cur_s)
    stored = get_reference(runtime.store, model) if reference is None else None
    ref: Window | Summary
    if stored is not None:
        ref, ref_label = (
            stored.summary,
            f"stored {stored.since:%Y-%m-%d %H:%M} to {stored.until:%Y-%m-%d %H:%M}",
        )
        if stored.summary.embeddings and stored.embedding_model != settings.default_embedding_model:
            typer.echo(f"the reference was embedded with {stored.embedding_model}: embeddings not compared")
            embeddings = False
    else:
        (ref_s,) = _seconds(reference=reference or "7d")
        ref, ref_label = (
            load_window(runtime.store, model, split - timedelta(seconds=ref_s), split),
            reference or "7d",
        )
    cur = load_window(runtime.store, model, split, now)
    if not ref.n or not cur.n:
        raise InvalidRequest(
            f"{model}: {ref.n} traces in the reference window and {cur.n} in the current one"
        )

    async def run() -> list[DriftRow]:
        try:
            embed = await _embed(runtime, settings, embeddings)
            return await drift(
                ref, cur, embed, permutations=permutations, max_samples=max_samples, alpha=alpha
            )
        finally:
            await runtime.close()

    rows = asyncio.run(run())
    table = Table(
        "statistic", "test", "reference", "current", "statistic", "p", "adjusted p", "drift",
        title=f"drift of {model}: reference {ref_label} ({ref.n} traces), current {current} ({cur.n})",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r.name, r.test, r.reference, r.current, f"{r.statistic:.4g}", f"{r.p_value:.3g}",
            f"{r.adjusted_p:.3g}", "[red]yes[/red]" if r.drifted else "no",
        )  # fmt: skip
    Console(width=160).print(table)
    out = html or Path(f"drift-{model.replace('/', '_')}.html")
    out.write_text(
        render(model, rows, reference=ref_label, current=current, ref_n=ref.n, cur_n=cur.n, alpha=alpha)
    )
    typer.echo(f"report: {out}")


@reference_app.command("set")
def reference_set(
    model: str = typer.Option(..., "--model", "-m", help="The model whose traces are summarised"),
    window: str = typer.Option("7d", help="The reference window, ending now"),
    embeddings: bool = typer.Option(True, help="Embed a sample of the texts (embedding model)"),
    max_samples: int = typer.Option(300, min=5, help="Texts embedded at most, per kind"),
    config: Path | None = CONFIG,
) -> None:
    """Summarise the model's traffic over the window once and store it: drift reports compare with it."""
    from llmdock.config import load_settings
    from llmdock.errors import InvalidRequest
    from llmdock.monitor.reference import set_reference
    from llmdock.runtime import Runtime

    (seconds,) = _seconds(window=window)
    settings = load_settings(config)
    runtime = Runtime(settings)
    assert runtime.store is not None
    store = runtime.store
    now = datetime.now(UTC)

    async def run() -> StoredReference:
        try:
            embed = await _embed(runtime, settings, embeddings)
            since = now - timedelta(seconds=seconds)
            return await set_reference(
                store, model, since, now, embed, settings.default_embedding_model, max_samples
            )
        finally:
            await runtime.close()

    stored = asyncio.run(run())
    if not stored.summary.n:
        raise InvalidRequest(f"{model}: no traces in the last {window}: nothing to make a reference of")
    _print_reference(stored)


@reference_app.command("show")
def reference_show(
    model: str = typer.Option(..., "--model", "-m", help="The model"), config: Path | None = CONFIG
) -> None:
    """What the stored reference holds."""
    from llmdock.config import load_settings
    from llmdock.errors import NotFound
    from llmdock.monitor.reference import get_reference
    from llmdock.store import Store

    settings = load_settings(config)
    stored = get_reference(Store(settings.resolved_database_url()), model)
    if stored is None:
        raise NotFound(f"{model} has no stored reference: llmdock monitor reference set --model {model}")
    _print_reference(stored)


def _print_reference(stored: StoredReference) -> None:
    s = stored.summary
    typer.echo(
        f"reference of {stored.model}: {s.n} traces from {stored.since:%Y-%m-%d %H:%M} to "
        f"{stored.until:%Y-%m-%d %H:%M} UTC, stored {stored.created_at:%Y-%m-%d %H:%M}"
    )
    langs = {
        k: ", ".join(f"{lang} {c}" for lang, c in sorted(v.items(), key=lambda kv: -kv[1])[:5])
        for k, v in s.languages.items()
    }
    for kind, mix in langs.items():
        typer.echo(f"  {kind} languages: {mix or '-'}")
    for name, values in s.scores.items():
        typer.echo(f"  online eval {name}: n={len(values)} mean {sum(values) / len(values):.3g}")
    hits, answered = s.rates.get("refusal rate (answers)", (0, 0))
    typer.echo(f"  refusals: {hits} of {answered} answers")
    for kind, topics in s.topics.items():
        shares = "; ".join(f"{name} {c}" for name, c in topics.shares(topics.counts).items())
        typer.echo(f"  {kind} topics: {shares}")
    vectors = ", ".join(f"{k} {len(v)}" for k, v in s.embeddings.items())
    typer.echo(f"  embeddings: {vectors} ({stored.embedding_model})" if vectors else "  embeddings: none")


@app.command("scores")
def scores_cmd(
    model: str = typer.Option(..., "--model", "-m", help="The model whose traces were scored"),
    since: str = typer.Option("1d", help="How far back (by when the traces were answered)"),
    metric: list[str] = typer.Option([], "--metric", help="Only these scores (repeatable)"),
    config: Path | None = CONFIG,
) -> None:
    """Online-evaluation scores per day and metric: mean, 95 % interval, count."""
    from llmdock.config import load_settings
    from llmdock.monitor.scores import daily, load_scores
    from llmdock.store import Store

    (seconds,) = _seconds(since=since)
    settings = load_settings(config)
    now = datetime.now(UTC)
    found = load_scores(
        Store(settings.resolved_database_url()), now - timedelta(seconds=seconds), now, [model], metric
    )
    table = Table(
        "day",
        "metric",
        "mean",
        "95% CI",
        "n",
        "interval",
        title=f"online evaluation of {model}, last {since}",
    )
    for day, name, est in daily(found):
        table.add_row(
            str(day), name, f"{est.mean:.3g}", f"[{est.low:.3g}, {est.high:.3g}]", str(est.n), est.method
        )
    Console(width=160).print(table)
    if not found:
        typer.echo(
            f"no online-evaluation scores for {model} in the last {since} (online_eval rules score traffic)"
        )


def _embedder(route: ModelRoute) -> Embed:
    """The embedding model as drift's ``embed``: batches of 64, a progress bar while it runs."""

    async def embed(texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        with Progress(transient=True) as progress:
            task = progress.add_task("embedding", total=len(texts))
            for i in range(0, len(texts), 64):
                batch = texts[i : i + 64]
                vectors += (await route.embed(batch)).vectors
                progress.advance(task, len(batch))
        return vectors

    return embed
