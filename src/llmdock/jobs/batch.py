"""Batch prediction: every row of a file through the served pipeline, a bounded number at once.

The rows are answered by a :class:`RowAnswerer`. The gateway's is the one its HTTP routes use, in process
(``llmdock.gateway.batch_rows``: the body parsed and checked as ``/v1/chat/completions`` parses it, then
prompt templates, guards, structured output, the cache and the trace, the answer in the same JSON), so a
batch row is answered exactly as the same request sent over HTTP, and ``jobs`` imports neither the gateway
nor the runtime. ``llmdock batch run`` and the gateway's Batch API both run rows through :func:`run_rows`.

Every row gives one output line in OpenAI's Batch API output shape (``id``, ``custom_id``, ``response``
with ``status_code``, ``request_id`` and ``body``, and ``error``); a row that failed, or a line that could
not be read, has ``error`` set (``code``, ``message``) and the batch goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from llmdock.errors import LlmdockError
from llmdock.jobs.batch_input import Row
from llmdock.jobs.batch_journal import ProgressJournal
from llmdock.jobs.executor import ExecutorUnavailable

log = logging.getLogger("llmdock.jobs")


@dataclass
class RowAnswer:
    """What the pipeline answered a row: the HTTP status it would have had, the JSON body, the trace id."""

    status: int
    body: dict[str, Any]
    request_id: str = ""


class RowAnswerer(Protocol):
    """Answers one request body sent to ``url`` (``/v1/chat/completions`` or ``/v1/completions``); never
    raises for a bad request or a failed generation (those are answers with an error status)."""

    async def answer(self, url: str, body: dict[str, Any]) -> RowAnswer: ...


@dataclass
class BatchCounts:
    total: int = 0
    completed: int = 0
    failed: int = 0


def output_line(batch_id: str, row: Row, answer: RowAnswer | None) -> bytes:
    """The output of one row, as a line of OpenAI's Batch API output file (without the newline)."""
    out: dict[str, Any] = {"id": f"batch_req_{batch_id}_{row.index}", "custom_id": row.custom_id}
    if answer is None:
        out["response"] = None
        out["error"] = {"code": "invalid_line", "message": row.error}
        return orjson.dumps(out)
    out["response"] = {"status_code": answer.status, "request_id": answer.request_id, "body": answer.body}
    err = answer.body.get("error") if answer.status != 200 else None
    out["error"] = {"code": err.get("code"), "message": err.get("message")} if isinstance(err, dict) else None
    return orjson.dumps(out)


def override(body: dict[str, Any], model: str | None, prompt: str | None) -> dict[str, Any]:
    """The body with ``--model`` and ``--prompt name@label`` (or ``name/version``) applied."""
    from llmdock.evaluate.targets import parse_prompt_ref

    if model is None and prompt is None:
        return body
    body = dict(body)
    if model is not None:
        body["model"] = model
    if prompt is not None:
        name, version, label = parse_prompt_ref(prompt)
        body.update(prompt_id=name, prompt_version=version, prompt_label=label)
    return body


async def _answer(
    answerer: RowAnswerer, row: Row, edit: Callable[[dict[str, Any]], dict[str, Any]]
) -> RowAnswer:
    try:
        return await answerer.answer(row.url, edit(row.body))
    except ExecutorUnavailable:  # the executor is gone, not the row: stop; the rows done are kept
        raise
    except Exception as exc:  # a bug must not stop a million-row batch: the row carries it
        log.exception("batch row %d failed unexpectedly", row.index)
        return RowAnswer(500, LlmdockError(f"internal error ({type(exc).__name__})").to_body())


async def run_rows(
    rows: Iterable[Row],
    answerer: RowAnswerer,
    journal: ProgressJournal,
    *,
    batch_id: str,
    concurrency: int,
    edit: Callable[[dict[str, Any]], dict[str, Any]] = lambda b: b,
    advance: Callable[[Row, bool], None] = lambda row, ok: None,
    stopping: Callable[[], bool] = lambda: False,
) -> BatchCounts:
    """Answer every row not in ``journal.done``, ``concurrency`` at once, recording each as it finishes.

    Returns the counts of this call (rows already done before it are not counted). ``stopping`` is asked
    before each row (a cancelled batch stops taking rows; those in flight finish)."""
    counts = BatchCounts()
    queue = iter(rows)

    async def worker() -> None:
        for row in queue:  # one shared iterator: each row goes to one worker, read as it is needed
            if row.index in journal.done:
                continue
            if stopping():
                return
            answer = None if row.error is not None else await _answer(answerer, row, edit)
            ok = answer is not None and answer.status == 200
            journal.record(row.index, ok, output_line(batch_id, row, answer))
            counts.total += 1
            counts.completed += ok
            counts.failed += not ok
            advance(row, ok)

    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*workers)
    except BaseException:  # one failed (its executor lost) or we were cancelled: none may outlive the journal
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return counts


def fingerprint(path: Path, *options: str | None) -> str:
    """The hash of an input file and the options its rows are answered with (names a journal's batch)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(orjson.dumps(list(options)))
    return digest.hexdigest()


def journal_for(output: Path) -> Path:
    """Where the progress of the batch writing ``output`` is kept."""
    return output.with_name(output.name + ".progress")


async def run_file(
    src: Path,
    output: Path,
    answerer: Callable[[], RowAnswerer],
    *,
    model: str | None = None,
    prompt: str | None = None,
    concurrency: int = 8,
    started: Callable[[int, int], None] = lambda total, done: None,
    advance: Callable[[Row, bool], None] = lambda row, ok: None,
) -> tuple[int, int]:
    """Answer every row of ``src`` into ``output`` (resuming a journal left by a killed run); returns (rows
    answered, rows with an error). ``started(total, done)`` is called once the journal is read, before
    ``answerer()`` is (so it may load models after the cheap checks)."""
    from llmdock.jobs.batch_input import count_rows, read_rows

    journal = ProgressJournal(journal_for(output), fingerprint(src, model, prompt))
    done = journal.open()
    total = count_rows(src)
    try:
        started(total, len(done))
        await run_rows(
            read_rows(src),
            answerer(),
            journal,
            batch_id=journal.fingerprint[:12],
            concurrency=concurrency,
            edit=lambda body: override(body, model, prompt),
            advance=advance,
        )
    finally:
        journal.close()
    counts = journal.assemble(total, output)
    journal.remove()
    return counts
