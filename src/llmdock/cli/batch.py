"""``llmdock batch run``: every row of a JSONL file through the served pipeline, resumable, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from llmdock.cli.executors import ADDRESS, EXECUTOR, WORKERS
from llmdock.cli.options import CONFIG

app = typer.Typer(help="Batch prediction through the served pipeline.", no_args_is_help=True)


class RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} rows/s" if speed else "- rows/s", style="progress.data.speed")


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RowsPerSecond(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    )


@app.command("run")
def run_cmd(
    input_file: Path = typer.Argument(
        ..., help="JSONL: chat bodies or Batch API lines", exists=True, dir_okay=False
    ),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL answers, one per row, in input order"),
    model: str | None = typer.Option(None, "--model", "-m", help="Send every row to this model [each row's]"),
    prompt: str | None = typer.Option(None, "--prompt", help="A prompt template: name@label or name/version"),
    concurrency: int = typer.Option(8, "--concurrency", "-j", min=1, help="Rows at once"),
    executor: str | None = EXECUTOR,
    address: str | None = ADDRESS,
    workers: int | None = WORKERS,
    config: Path | None = CONFIG,
) -> None:
    """Answer every row; run the same command again after a crash to finish the rows not yet done."""
    from llmdock.config import load_settings
    from llmdock.errors import Conflict
    from llmdock.jobs.batch import journal_for
    from llmdock.jobs.executor import chosen

    spec = chosen(executor, address, workers)
    if output.exists() and not journal_for(output).exists():
        raise Conflict(
            f"{output} exists and is complete: delete it to run the batch again", where=str(output)
        )
    settings = load_settings(config)
    err = Console(stderr=True)
    try:
        ok, failed = asyncio.run(_run(settings, input_file, output, (model, prompt), concurrency, err, spec))
    except KeyboardInterrupt:
        err.print(
            f"interrupted: the rows done are kept in {journal_for(output)}; run the same command to resume"
        )
        raise typer.Exit(130) from None
    err.print(f"{ok + failed} rows: {ok} answered, {failed} with an error → {output}", highlight=False)


async def _run(
    settings: Any,
    src: Path,
    output: Path,
    overrides: tuple[str | None, str | None],
    concurrency: int,
    err: Console,
    spec: Any,
) -> tuple[int, int]:
    from llmdock.cli.executors import ServedRows, rows_on_ray
    from llmdock.jobs.batch import run_file

    answerer = await (rows_on_ray(settings, spec) if spec.remote else ServedRows.start(settings))
    try:
        with progress_bar(err) as bar:
            task = bar.add_task(src.name if not spec.remote else f"{src.name} (ray: {spec.address})")

            def advance(row: Any, ok: bool) -> None:
                if row.error is not None:
                    bar.console.print(f"[yellow]skipped[/] {row.error}", highlight=False)
                bar.advance(task)

            return await run_file(
                src,
                output,
                lambda: answerer,
                model=overrides[0],
                prompt=overrides[1],
                concurrency=concurrency,
                started=lambda total, done: bar.update(task, total=total, completed=done),
                advance=advance,
            )
    finally:
        await answerer.close()
