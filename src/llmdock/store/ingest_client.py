"""A worker's side of the ingester process (store/ingest.py): journal each trace, keep an ingester running.

:class:`IngestedWriter` has :class:`~llmdock.store.trace_writer.TraceWriter`'s surface, but holds no buffer
and no thread that writes to the database: ``submit`` appends the (prepared) trace to this worker's journal
and returns; the ingester process stores it. A light thread checks every few seconds that an ingester runs
for this journal root and store (starting one if not: it may have been killed too) and forgets the journal
segments the ingester deleted, so that ``journal_max_mb`` counts what is really waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from llmdock.store.engine import Store
from llmdock.store.ingest import MARKER, URL_ENV, read_cursor, read_status, take_lock, url_tag
from llmdock.store.journal import Journal
from llmdock.store.trace_records import TraceRecord
from llmdock.store.trace_writer import prepare_record

log = logging.getLogger("llmdock.traces")
STALE_S = 10.0  # an ingester status older than this: the ingester is gone


class IngestedWriter:
    """Journals finished traces for the ingester process to store (``trace.ingest: process``)."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        *,
        batch_size: int = 256,
        flush_interval_s: float = 0.2,
        prepare: Callable[[TraceRecord], None] | None = None,
        check_interval_s: float = 2.0,
    ) -> None:
        self.store = store
        self.journal = journal
        self.prepare = prepare
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.dropped = 0  # traces whose ``prepare`` failed: never journaled, never stored
        self.root = journal.root
        (journal.dir / MARKER).touch()  # the ingester stores this journal (it leaves thread-mode ones alone)
        self._tag = url_tag(store.url)
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = time.time()
        self._stop = threading.Event()
        self.ensure_ingester()
        self._thread = threading.Thread(
            target=self._watch, args=(check_interval_s,), name="llmdock-ingest-watch", daemon=True
        )
        self._thread.start()

    @property
    def refusing(self) -> bool:
        """Whether new requests should be refused (:attr:`Journal.refusing`)."""
        return self.journal.refusing

    def submit(self, record: TraceRecord) -> asyncio.Future[None] | None:
        """Journal a finished trace (prepared first: nothing reaches disk unprepared). Never blocks on the
        database; with ``journal_sync: fsync`` returns a future done once the trace is on disk."""
        if self.prepare is not None and not record.prepared and not prepare_record(self.prepare, record):
            self.dropped += 1
            return None
        record.seq = self.journal.append(record)
        return self.journal.synced() if record.seq else None

    def status(self) -> dict[str, Any]:
        state = read_status(self.root)
        running = self._fresh(state)
        error = str(state.get("last_error", "")) if running else "the trace ingester process is not running"
        return {
            "ok": running and bool(state.get("ok")),
            "ingester": int(state["pid"]) if running else None,
            "pending": max(0, self.journal.appended - read_cursor(self.journal.dir)[2]),
            "pending_bytes": self._pending_bytes(),
            "written": int(state.get("written", 0)),
            "dropped": self.dropped + self.journal.lost + int(state.get("dropped", 0)),
            "last_error": error,
            "journal": {"bytes": self.journal.size},
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the ingester has stored everything journaled so far; False if not in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pending_bytes():
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 10.0) -> None:
        flushed = self.flush(timeout)
        self._stop.set()
        self._thread.join(timeout=2)
        # Everything stored: the journal goes. Else it stays; the ingester (this one or the next) stores it.
        self.journal.close(remove=flushed)

    def adopt_orphans(self) -> int:
        """Before the first request (budgets read what was spent from the traces): wait until the ingester
        has stored the journals of processes that are gone. Stops waiting if the store is away (the
        journals keep them) or after 30 s. Returns how many journals were left to store."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = read_status(self.root)
            reported = self._fresh(state) and float(state.get("updated", 0)) > self._started
            if reported and (not state.get("ok") or not state.get("draining")):
                return int(state.get("draining", 0))
            time.sleep(0.05)
        log.warning("the trace ingester has not reported within 30 s; journals are stored when it runs")
        return 0

    def ensure_ingester(self) -> None:
        """Start an ingester for this journal root unless one runs for the same store."""
        if self._proc is not None:
            if self._proc.poll() is None:
                return  # the one this worker started is running, or still starting (it takes the lock)
            self._proc = None  # reaped
        fd = take_lock(self.root, wait_s=0)
        if fd >= 0:
            os.close(fd)  # free: nobody ingests this root
        else:
            state = read_status(self.root)
            if not state or state.get("store") in (None, self._tag):
                return  # it runs (or is starting and has not reported yet)
            log.warning("the trace ingester of %s writes to another store: replacing it", self.root)
            with contextlib.suppress(OSError, KeyError, ValueError):
                os.kill(int(state["pid"]), signal.SIGKILL)  # the journals keep what it has not stored
        command = [sys.executable, "-m", "llmdock.store.ingest", str(self.root), str(self.batch_size)]
        log_file = (self.root / "ingest.log").open("ab")
        try:
            self._proc = subprocess.Popen(
                [*command, str(self.flush_interval_s)],
                env={**os.environ, URL_ENV: self.store.url},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                close_fds=True,
            )
        finally:
            log_file.close()

    def _fresh(self, state: dict[str, Any]) -> bool:
        updated = float(state.get("updated", 0))
        return state.get("store") == self._tag and time.time() - updated < STALE_S

    def _pending_bytes(self) -> int:
        """Bytes of this worker's journal the ingester has not stored yet."""
        if not self.journal.size:
            return 0  # nothing journaled (or all of it stored and its segments deleted)
        segment, size = self.journal.position
        stored_segment, offset, _ = read_cursor(self.journal.dir)
        if stored_segment > segment or (stored_segment == segment and offset >= size):
            return 0
        return max(self.journal.size - offset, 1) if stored_segment == segment else max(self.journal.size, 1)

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.journal.refresh_size()
                self.ensure_ingester()
            except Exception:
                log.exception("checking the trace ingester failed")
