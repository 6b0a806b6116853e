"""``llmdock kb``: knowledge bases — create, add files, list, show, search, glossary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from llmdock.cli.options import AS_JSON, CONFIG, open_store
from llmdock.config import load_settings

app = typer.Typer(help="Knowledge bases: ingest documents, search them, ground answers in them.")
T = TypeVar("T")


def _with_runtime(config: Path | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(runtime)`` with the configured models and store (the embedding model loads on use)."""
    from llmdock.errors import ConfigError
    from llmdock.runtime import Runtime

    async def go() -> T:
        runtime = Runtime(load_settings(config))
        try:
            if runtime.store is None or runtime.store_error:
                raise ConfigError(f"knowledge bases live in the store: {runtime.store_error or 'disabled'}")
            return await work(runtime)
        finally:
            await runtime.close()

    return asyncio.run(go())


@app.command("create")
def create_cmd(
    name: str,
    model: str | None = typer.Option(None, help="embedding model [default_embedding_model]"),
    description: str = typer.Option("", help="what it holds, in words (rag.route_by: description)"),
    config: Path | None = CONFIG,
) -> None:
    """Create an empty knowledge base, embedded with MODEL from now on."""
    from llmdock.rag import bases

    settings = load_settings(config)
    embedder = model or settings.default_embedding_model
    if embedder not in settings.all_models():
        from llmdock.errors import ConfigError

        raise ConfigError(f"no model {embedder!r} configured", where="--model")
    kb = bases.create(open_store(config), name, embedder, description)
    typer.echo(f"knowledge base {kb.name} created (embeddings: {kb.embedding_model})")


@app.command("describe")
def describe_cmd(name: str, description: str, config: Path | None = CONFIG) -> None:
    """Say what a knowledge base holds: a model naming several routes each question by it (rag.route_by)."""
    from llmdock.rag import bases

    kb = bases.describe(open_store(config), name, description)
    typer.echo(f"{kb.name}: {kb.description}")


@app.command("add")
def add_cmd(
    name: str,
    paths: list[Path] = typer.Argument(..., help="files or folders (recursively)"),
    config: Path | None = CONFIG,
) -> None:
    """Ingest text, Markdown, HTML and PDF files: unchanged files are skipped, removed ones removed."""
    from llmdock.rag import bases
    from llmdock.rag.ingest import Ingest, source_files
    from llmdock.rag.retrieve import Retriever

    err = Console(stderr=True)
    total = len(source_files(paths)[0])
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())

    async def work(runtime: Any) -> Any:
        kb = bases.get(runtime.store, name)
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(f"kb add {name}", total=total)

            def advance(path: Path, what: str) -> None:
                if what.startswith("skipped"):
                    progress.console.print(f"[yellow]{path}[/]: {what}", highlight=False)
                progress.advance(task)

            report = await Ingest(runtime.stage_env, runtime.store, kb, advance).run(paths)
            progress.update(task, description=f"kb add {name}: indexing")
            # Built and saved now, by version: a server loads it instead of building it in a request.
            Retriever(runtime.stage_env, runtime.store).index(name)
            return report

    report = _with_runtime(config, work)
    for path, why in report.skipped:
        if why == "no such file or directory":
            err.print(f"[yellow]{path}[/]: skipped: {why}", highlight=False)
    typer.echo(
        f"{name}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.skipped)} skipped; {report.chunks} chunks "
        f"({report.embedded} embedded, {report.reused} reused)"
    )


@app.command("list")
def list_cmd(config: Path | None = CONFIG, as_json: bool = AS_JSON) -> None:
    """Every knowledge base with its documents and chunks."""
    from llmdock.rag import bases

    kbs = bases.list_all(open_store(config))
    if as_json:
        typer.echo(json.dumps([_kb_dict(k) for k in kbs], indent=2))
        return
    table = Table("name", "documents", "chunks", "embeddings", "dims", "version")
    for k in kbs:
        table.add_row(
            k.name, str(k.documents), str(k.chunks), k.embedding_model, str(k.dimensions), str(k.version)
        )
    Console().print(table)


def _kb_dict(k: Any) -> dict[str, Any]:
    return {
        "name": k.name,
        "documents": k.documents,
        "chunks": k.chunks,
        "embedding_model": k.embedding_model,
        "dimensions": k.dimensions,
        "version": k.version,
        "description": k.description,
        "created_at": k.created_at.isoformat(),
    }


@app.command("show")
def show_cmd(name: str, config: Path | None = CONFIG, as_json: bool = AS_JSON) -> None:
    """A knowledge base's documents (source, kind, chunks) and glossary size."""
    from llmdock.rag import bases

    store = open_store(config)
    kb = bases.get(store, name)
    docs = sorted(bases.documents(store, kb.id), key=lambda d: d.source)
    terms = len(bases.glossary(store, kb.id))
    if as_json:
        data = _kb_dict(kb) | {"glossary_terms": terms}
        data["documents_list"] = [{"source": d.source, "kind": d.kind, "chunks": d.chunks} for d in docs]
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"{kb.name}: {kb.documents} documents, {kb.chunks} chunks, {terms} glossary terms")
    table = Table("source", "kind", "chunks", "title")
    for d in docs:
        table.add_row(d.source, d.kind, str(d.chunks), d.title)
    Console().print(table)


@app.command("search")
def search_cmd(
    name: str,
    query: str,
    k: int = typer.Option(5, "-k", min=1, help="hits"),
    mode: str = typer.Option("hybrid", help="hybrid, dense or bm25"),
    where: list[str] = typer.Option(
        [], "--filter", help="source=GLOB, kind=html|pdf|markdown|text, heading=WORD"
    ),
    mmr: float | None = typer.Option(None, help="maximal marginal relevance λ (1 = relevance only)"),
    config: Path | None = CONFIG,
    as_json: bool = AS_JSON,
) -> None:
    """The chunks that best answer QUERY, with their sources and scores."""
    from llmdock.errors import InvalidRequest
    from llmdock.rag.chunking import HEADING_SEPARATOR
    from llmdock.rag.retrieve import Retriever

    if mode not in ("hybrid", "dense", "bm25"):
        raise InvalidRequest("--mode is hybrid, dense or bm25", param="mode")
    filters = dict(f.split("=", 1) for f in where if "=" in f)
    if len(filters) != len(where):
        raise InvalidRequest("--filter is KEY=VALUE", param="filter")

    async def work(runtime: Any) -> Any:
        retriever = Retriever(runtime.stage_env, runtime.store)
        return await retriever.search(name, query, k=k, mode=mode, filters=filters, mmr=mmr)  # type: ignore[arg-type]

    hits = _with_runtime(config, work)
    if as_json:
        typer.echo(json.dumps([h.cite() | {"headings": h.headings, "text": h.text} for h in hits], indent=2))
        return
    for n, h in enumerate(hits, 1):
        head = HEADING_SEPARATOR.join(h.headings)
        typer.echo(f"[{n}] {h.score:.4f} {h.source} #{h.chunk_id} {head}")
        typer.echo("    " + h.text[:300].replace("\n", " "))


@app.command("glossary")
def glossary_cmd(
    name: str, file: Path = typer.Argument(..., exists=True, dir_okay=False), config: Path | None = CONFIG
) -> None:
    """Replace the knowledge base's glossary with FILE (YAML: term: definition)."""
    from llmdock.rag import bases
    from llmdock.rag.glossary import read_glossary

    entries = read_glossary(file)
    store = open_store(config)
    bases.set_glossary(store, bases.get(store, name).id, entries)
    typer.echo(f"{name}: {len(entries)} glossary terms")


@app.command("testset")
def testset_cmd(
    name: str,
    out: Path | None = typer.Option(None, "-o", "--output", help="also write it to this file (JSON lines)"),
    dataset: str | None = typer.Option(
        None, "--dataset", help="the dataset it is saved as, a new version each time [NAME-testset]"
    ),
    n: int = typer.Option(20, "-n", min=1, help="questions to keep"),
    model: str | None = typer.Option(None, help="the model that writes them [default_model]"),
    judge: str | None = typer.Option(None, help="the model that checks them [the --model]"),
    seed: int = typer.Option(0, help="the same seed, knowledge base and model give the same test set"),
    kinds: str = typer.Option(
        "simple,complex,distracting,situational,double,conversational", help="kinds, in turn"
    ),
    retries: int = typer.Option(2, min=0, help="new attempts for a rejected generation"),
    concurrency: int = typer.Option(4, min=1, max=64, help="chunks asked about at once"),
    max_chunks: int | None = typer.Option(
        None, "--max-chunks", min=1, help="give up after asking about this many chunks [all of them]"
    ),
    config: Path | None = CONFIG,
) -> None:
    """Generate questions with reference answers and their source chunks from a knowledge base."""
    from llmdock.cli.access import who
    from llmdock.datasets.versions import Datasets
    from llmdock.errors import InvalidRequest
    from llmdock.rag import testset_store
    from llmdock.rag.testset import REASONS, TestsetGenerator, why_empty
    from llmdock.rag.testset_file import write_testset

    err = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())

    async def work(runtime: Any) -> Any:
        writer = model or runtime.settings.default_model
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(f"kb testset {name}", total=n)
            gen = TestsetGenerator(
                runtime.stage_env,
                runtime.store,
                name,
                writer,
                judge or writer,
                seed=seed,
                kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
                retries=retries,
                concurrency=concurrency,
                max_chunks=max_chunks,
                advance=lambda kept: progress.update(task, completed=kept),
            )
            outcome = await gen.run(n)
        if not outcome.rows:
            raise InvalidRequest(f"kb testset {name}: no question kept: {why_empty(outcome)}", param="n")
        made = testset_store.lineage_of(outcome, name, gen.kb.version, writer, judge or writer, seed)
        datasets = Datasets(runtime.store, runtime.settings.home)
        saved = testset_store.save_testset(
            datasets, dataset or testset_store.default_name(name), outcome, who(), made
        )
        return outcome, saved

    outcome, (version, new) = _with_runtime(config, work)
    written = len(outcome.rows)
    if out is not None:
        write_testset(out, outcome.rows)
    rejected = ", ".join(f"{why} {outcome.rejected[why]}" for why in REASONS if outcome.rejected[why])
    state = "" if new else " (unchanged: the same rows as the latest version)"
    typer.echo(
        f"dataset {version.name}/{version.version} @{version.digest[:12]}{state}"
        f"{f' and {out}' if out else ''}: {written} questions kept of {outcome.generated} generated from "
        f"{outcome.candidates} chunks (rejected: {rejected or 'none'}); every row is marked synthetic"
    )
    if written < n:
        spent = max_chunks is not None and outcome.candidates >= max_chunks
        why = "the --max-chunks budget was spent" if spent else "the chunks ran out"
        err.print(f"[yellow]{written} of the {n} asked for[/]: {why}", highlight=False)


@app.command("evaluate")
def evaluate_cmd(
    name: str,
    testset: str = typer.Argument(
        ..., help="a test set: a dataset NAME[/VERSION] (llmdock kb testset) or a JSON-lines file"
    ),
    model: str | None = typer.Option(None, help="the chat model that names the knowledge base"),
    judge: str | None = typer.Option(None, help="the judge model [llm-rubric's default]"),
    repeats: int = typer.Option(1, min=1, max=20, help="answers per question"),
    judge_repeats: int = typer.Option(
        1, "--judge-repeats", min=1, max=20, help="judgements of each answer (the judge's own noise shows)"
    ),
    retrieval_only: bool = typer.Option(False, "--retrieval-only", help="score the retriever alone"),
    judge_cache: bool = typer.Option(True, "--judge-cache/--no-judge-cache"),
    config: Path | None = CONFIG,
    as_json: bool = AS_JSON,
) -> None:
    """Score the retriever (dense, BM25, hybrid) and the generator on a test set, as an evaluation run."""
    from llmdock.cli.access import who
    from llmdock.cli.kb_report import print_kb_report
    from llmdock.datasets.versions import Datasets
    from llmdock.rag import bases, testset_store
    from llmdock.rag.kbeval import Plan, evaluate_kb, kb_model

    err = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())

    async def work(runtime: Any) -> Any:
        chat = kb_model(runtime, name, model) if not retrieval_only else (model or "")
        plan = Plan(name, chat, judge or "", repeats, not retrieval_only, judge_cache, judge_repeats)
        with testset_store.scratch_dir(runtime.settings.home) as scratch:
            datasets = Datasets(runtime.store, runtime.settings.home)
            loaded = testset_store.load(testset, datasets, Path(scratch))
            kb = bases.get(runtime.store, name)
            for warning in testset_store.lineage_warnings(loaded, name, kb.version):
                err.print(f"[yellow]{warning}[/]", highlight=False)
            with Progress(*columns, console=err, transient=True) as progress:
                task = progress.add_task(f"kb evaluate {name}", total=None)
                return await evaluate_kb(
                    runtime,
                    runtime.store,
                    runtime.plugins.metrics,
                    plan,
                    loaded.path,
                    loaded.questions,
                    who().name,
                    lambda done, total: progress.update(task, completed=done, total=total),
                    label=loaded.label,
                )

    print_kb_report(_with_runtime(config, work), as_json)
