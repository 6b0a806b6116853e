"""``llmdock monitor``: how a model's traffic drifted between a reference window and the current one."""

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
    from llmdock.monitor.drift import Embed
    from llmdock.routing.router import ModelRoute

app = typer.Typer(help="Monitoring: drift of a model's traffic.", no_args_is_help=True)


@app.command("drift")
def drift_cmd(
    model: str = typer.Option(..., "--model", "-m", help="The model whose traces are compared"),
    reference: str = typer.Option("7d", help="The reference window, just before the current one"),
    current: str = typer.Option("1d", help="The current window, ending now"),
    html: Path | None = typer.Option(None, help="Write the report here [drift-MODEL.html]"),
    embeddings: bool = typer.Option(True, help="Compare the texts' meaning (embedding model)"),
    permutations: int = typer.Option(200, min=10, help="Permutations for the embedding test's p-value"),
    max_samples: int = typer.Option(300, min=5, help="Texts per window embedded at most"),
    alpha: float = typer.Option(0.05, min=0.0, max=1.0, help="Drift when the adjusted p-value is below"),
    config: Path | None = CONFIG,
) -> None:
    """Lengths, tokens, error and guard-block rates, and input/output meaning: a table and an HTML report."""
    from llmdock.config import load_settings
    from llmdock.config.monitor_settings import parse_duration
    from llmdock.errors import InvalidRequest
    from llmdock.monitor.drift import DriftRow, drift, load_window
    from llmdock.monitor.drift_report import render
    from llmdock.runtime import Runtime

    try:
        ref_s, cur_s = parse_duration(reference), parse_duration(current)
    except ValueError as exc:
        raise InvalidRequest(f"--reference/--current: {exc}") from None
    settings = load_settings(config)
    runtime = Runtime(settings)
    assert runtime.store is not None
    now = datetime.now(UTC)
    split = now - timedelta(seconds=cur_s)
    ref = load_window(runtime.store, model, split - timedelta(seconds=ref_s), split)
    cur = load_window(runtime.store, model, split, now)
    if not ref.n or not cur.n:
        raise InvalidRequest(
            f"{model}: {ref.n} traces in the reference window and {cur.n} in the current one"
        )

    async def run() -> list[DriftRow]:
        embed = None
        if embeddings and settings.default_embedding_model:
            route = runtime.backend(settings.default_embedding_model)
            if not route.loaded:
                await route.start()
            embed = _embedder(route)
        try:
            return await drift(
                ref, cur, embed, permutations=permutations, max_samples=max_samples, alpha=alpha
            )
        finally:
            await runtime.close()

    rows = asyncio.run(run())
    table = Table(
        "statistic",
        "test",
        "reference",
        "current",
        "statistic",
        "p",
        "adjusted p",
        "drift",
        title=f"drift of {model}: reference {reference} ({ref.n} traces), current {current} ({cur.n})",
    )
    for r in rows:
        table.add_row(
            r.name,
            r.test,
            r.reference,
            r.current,
            f"{r.statistic:.4g}",
            f"{r.p_value:.3g}",
            f"{r.adjusted_p:.3g}",
            "[red]yes[/red]" if r.drifted else "no",
        )
    Console(width=160).print(table)
    out = html or Path(f"drift-{model.replace('/', '_')}.html")
    out.write_text(
        render(model, rows, reference=reference, current=current, ref_n=ref.n, cur_n=cur.n, alpha=alpha)
    )
    typer.echo(f"report: {out}")


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
