"""The Batch API's worker: runs the store's batches off the request path, in every gateway worker process.

Each process polls the store; a batch is run by the one process holding its lease (``batch_store.claim``),
``CONCURRENCY`` rows at once, one batch at a time per process. Rows finish into the batch's progress journal
under ``<home>/batches/``, so a gateway killed mid-batch loses nothing: when its lease lapses, a worker (of
the restarted gateway, or another one) takes the batch over and answers only the rows not recorded. At the
end the output and error files are assembled in input order, each row exactly once, and stored as files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmdock.errors import InvalidRequest
from llmdock.jobs import batch_store as db
from llmdock.jobs.batch import RowAnswer, RowAnswerer, run_rows
from llmdock.jobs.batch_input import count_rows, read_rows
from llmdock.jobs.batch_journal import ProgressJournal
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import BatchJob

log = logging.getLogger("llmdock.jobs")
CONCURRENCY = 8  # rows at once per gateway worker process, beside the interactive traffic
POLL_S = 1.0


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
    ) -> None:
        self.store = store
        self.home = Path(home).expanduser()
        self.rows_for = rows_for
        self.poll_s = poll_s
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    async def run_forever(self) -> None:
        while True:
            try:
                job = await asyncio.to_thread(db.claim, self.store, self.name)
                if job is None:
                    await asyncio.sleep(self.poll_s)
                    continue
                try:
                    await self.run(job)
                finally:
                    await asyncio.shield(asyncio.to_thread(db.release, self.store, job.id, self.name))
            except asyncio.CancelledError:
                raise
            except Exception:  # a store hiccup or a bug: log, wait, poll again (the lease lapses on its own)
                log.exception("batch worker: unexpected error")
                await asyncio.sleep(self.poll_s)

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
        state = {"cancel": job.status == "cancelling", "lost": False}
        beat = asyncio.create_task(self._heartbeat(job, journal, state))
        try:
            if not state["cancel"] and job.status != "finalizing":
                await run_rows(
                    read_rows(source, job.input_file_id),
                    EndpointRows(self.rows_for(job.owner), job.endpoint),
                    journal,
                    batch_id=job.id.removeprefix("batch_"),
                    concurrency=CONCURRENCY,
                    stopping=lambda: state["cancel"] or state["lost"],
                )
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            journal.close()
        if state["lost"]:
            log.warning("batch %s: lease lost to another worker; leaving it", job.id)
            return
        await asyncio.to_thread(self._finish, job, journal, bool(state["cancel"]))

    async def _heartbeat(self, job: BatchJob, journal: ProgressJournal, state: dict[str, bool]) -> None:
        """Renew the lease, publish the counts, notice a cancel."""
        while True:
            await asyncio.sleep(db.LEASE_S / 3)
            held = await asyncio.to_thread(db.renew, self.store, job.id, self.name)
            if not held:
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

    def _finish(self, job: BatchJob, journal: ProgressJournal, cancelled: bool) -> None:
        """Assemble the output and error files, store them, close the batch."""
        db.set_state(self.store, job.id, "finalizing")
        work = journal.path.parent
        out, err = work / f"{job.id}_output.jsonl", work / f"{job.id}_error.jsonl"
        ok, failed = journal.assemble(job.total, out, err, partial=cancelled)
        ids: dict[str, Any] = {"output_file_id": None, "error_file_id": None}
        for key, path, n in (("output_file_id", out, ok), ("error_file_id", err, failed)):
            if n:
                ids[key] = db.store_file(self.store, self.home, job.scope, path, path.name, "batch_output").id
            path.unlink(missing_ok=True)
        db.set_state(
            self.store, job.id, "cancelled" if cancelled else "completed", completed=ok, failed=failed, **ids
        )
        journal.remove()
        log.info(
            "batch %s %s: %d answered, %d with an error",
            job.id,
            "cancelled" if cancelled else "done",
            ok,
            failed,
        )
