"""The Batch API's runner: runs the store's batches off the request path, in one gateway worker process.

Every worker process starts a ``BatchWorker``; only the one holding the ``batch-runner`` lease
(``batch_lease``) takes batches, so of every worker of every gateway on one store exactly one runs them, the
others wait to take over. A batch is run by the worker holding its own lease too (``batch_store.claim``),
``batch.concurrency`` rows at once (8 by default). Rows finish into the batch's progress journal under ``<home>/batches/``, so a
runner killed mid-batch loses nothing: when its leases lapse, the next worker to ask (of this gateway, or
the restarted one) takes over and answers only the rows not recorded. At the end the output and error files
are assembled in input order, each row exactly once, and stored as files. A batch past its completion
window stops taking rows and ends ``expired``: the rows done in its output file, the others in its error
file as ``batch_expired``, as OpenAI does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from llmdock.config.batch_settings import DEFAULT_CONCURRENCY, DEFAULT_LEASE_S
from llmdock.errors import InvalidRequest
from llmdock.jobs import batch_store as db
from llmdock.jobs.batch import RowAnswer, RowAnswerer, run_rows
from llmdock.jobs.batch_input import Row, count_rows, read_rows
from llmdock.jobs.batch_journal import ProgressJournal
from llmdock.jobs.batch_lease import lead, resign
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import BatchJob

log = logging.getLogger("llmdock.jobs")
POLL_S = 1.0
EXPIRED = "This request could not be executed before the completion window expired."


class EndpointRows:
    """A batch answers only rows sent to its own endpoint, as OpenAI's Batch API does."""

    def __init__(self, inner: RowAnswerer, endpoint: str) -> None:
        self.inner = inner
        self.endpoint = endpoint

    async def answer(self, url: str, body: dict[str, Any]) -> RowAnswer:
        if url != self.endpoint:
            refused = InvalidRequest(
                f"url {url!r} is not the batch's endpoint {self.endpoint!r}", param="url"
            )
            return RowAnswer(refused.status, refused.to_body())
        return await self.inner.answer(url, body)


class BatchWorker:
    """Runs batches for this process; ``rows_for(owner)`` answers a batch's rows as its owner."""

    def __init__(
        self,
        store: Store,
        home: Path,
        rows_for: Callable[[dict[str, Any]], RowAnswerer],
        *,
        poll_s: float = POLL_S,
        lease_s: float = DEFAULT_LEASE_S,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.store = store
        self.home = Path(home).expanduser()
        self.rows_for = rows_for
        self.poll_s = poll_s
        self.lease_s = lease_s  # both leases (the runner's, the batch's), renewed every third of it
        self.concurrency = concurrency  # rows at once (batch.concurrency), beside the interactive traffic
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.leading = False
        self._led = 0.0

    async def run_forever(self) -> None:
        """Wait to hold the runner lease, then run the store's batches one after the other, for good."""
        try:
            while True:
                try:
                    if not await self._lead():
                        await asyncio.sleep(self.poll_s)
                        continue
                    job = await asyncio.to_thread(db.claim, self.store, self.name, self.lease_s)
                    if job is None:
                        await asyncio.sleep(self.poll_s)
                        continue
                    try:
                        await self.run(job)
                    finally:
                        await asyncio.shield(asyncio.to_thread(db.release, self.store, job.id, self.name))
                except asyncio.CancelledError:
                    raise
                except Exception:  # a store hiccup or a bug: log, wait, poll again (the leases lapse alone)
                    log.exception("batch worker: unexpected error")
                    await asyncio.sleep(self.poll_s)
        finally:
            if self.leading:
                await asyncio.shield(asyncio.to_thread(resign, self.store, self.name))

    async def _lead(self) -> bool:
        """Whether this worker is the runner: renewed every third of ``lease_s`` by the holder, asked for by
        the others at every poll (one conditional UPDATE, which fails while the holder lives)."""
        if self.leading and time.monotonic() - self._led < self.lease_s / 3:
            return True
        was, self.leading = self.leading, await asyncio.to_thread(lead, self.store, self.name, self.lease_s)
        if self.leading:
            self._led = time.monotonic()
            if not was:
                log.info("batch worker %s now runs the batches", self.name)
        return self.leading

    async def run(self, job: BatchJob) -> None:
        """Run (or resume) ``job`` while holding its lease; finish it unless the lease is lost."""
        source = db.file_path(
            self.home, await asyncio.to_thread(db.get_file, self.store, job.scope, job.input_file_id)
        )
        if job.status == "validating":
            total = await asyncio.to_thread(count_rows, source)
            await asyncio.to_thread(db.set_state, self.store, job.id, "in_progress", total=total)
            job.total, job.status = total, "in_progress"
        journal = ProgressJournal(self.home / "batches" / f"{job.id}.progress", job.id)
        journal.open()
        expires = float((job.times or {}).get("expires") or "inf")
        state = {"cancel": job.status == "cancelling", "lost": False}
        beat = asyncio.create_task(self._heartbeat(job, journal, state))
        try:
            if not state["cancel"] and job.status != "finalizing":
                await run_rows(
                    read_rows(source, job.input_file_id),
                    EndpointRows(self.rows_for(job.owner), job.endpoint),
                    journal,
                    batch_id=job.id.removeprefix("batch_"),
                    concurrency=self.concurrency,
                    stopping=lambda: state["cancel"] or state["lost"] or time.time() >= expires,
                )
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if state["lost"]:
            journal.close()
            log.warning("batch %s: lease lost to another worker; leaving it", job.id)
            return
        ending = "cancelled" if state["cancel"] or "cancelling" in (job.times or {}) else "completed"
        if ending == "completed" and len(journal.done) < job.total:  # stopped by its completion window
            ending = "expired"
            await asyncio.to_thread(_expire_rest, journal, read_rows(source, job.input_file_id), job.id)
        journal.close()
        await asyncio.to_thread(self._finish, job, journal, ending)

    async def _heartbeat(self, job: BatchJob, journal: ProgressJournal, state: dict[str, bool]) -> None:
        """Renew the runner lease and the batch's, publish the counts, notice a cancel."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = await asyncio.to_thread(db.renew, self.store, job.id, self.name, self.lease_s)
            if not held or not await self._lead():
                state["lost"] = True
                return
            row = await asyncio.to_thread(self._publish, job.id, journal)
            state["cancel"] = row.status == "cancelling"

    def _publish(self, batch_id: str, journal: ProgressJournal) -> BatchJob:
        done, failed = len(journal.done), len(journal.failed)
        with self.store.session() as s, s.begin():
            row = s.get(BatchJob, batch_id)
            assert row is not None
            row.completed, row.failed = done - failed, failed
        return row

    def _finish(self, job: BatchJob, journal: ProgressJournal, ending: str) -> None:
        """Assemble the output and error files, store them, close the batch as ``ending``."""
        db.set_state(self.store, job.id, "finalizing")
        work = journal.path.parent
        out, err = work / f"{job.id}_output.jsonl", work / f"{job.id}_error.jsonl"
        ok, failed = journal.assemble(job.total, out, err, partial=ending == "cancelled")
        ids: dict[str, Any] = {"output_file_id": None, "error_file_id": None}
        for key, path, n in (("output_file_id", out, ok), ("error_file_id", err, failed)):
            if n:
                ids[key] = db.store_file(self.store, self.home, job.scope, path, path.name, "batch_output").id
            path.unlink(missing_ok=True)
        db.set_state(self.store, job.id, ending, completed=ok, failed=failed, **ids)
        journal.remove()
        log.info("batch %s %s: %d answered, %d with an error", job.id, ending, ok, failed)


def _expire_rest(journal: ProgressJournal, rows: Iterable[Row], batch_id: str) -> int:
    """Record every row not done as expired (OpenAI's ``batch_expired`` error line); returns how many."""
    n = 0
    for row in rows:
        if row.index not in journal.done:
            line = {"id": f"batch_req_{batch_id.removeprefix('batch_')}_{row.index}", "custom_id": row.custom_id,
                    "response": None, "error": {"code": "batch_expired", "message": EXPIRED}}  # fmt: skip
            journal.record(row.index, False, orjson.dumps(line))
            n += 1
    return n
