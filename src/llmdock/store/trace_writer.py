"""The trace writer: finished traces stored in batches from a background thread, journaled first.

The gateway never waits for the database: finished traces go into a bounded in-memory buffer that a
background thread flushes in batches. When the store is unreachable the writer keeps the traces, retries
with backoff, and reports the failure (``status()``, shown on ``/ready``); it drops the oldest traces only
once ``max_buffer`` is exceeded, and counts what it dropped. With a :class:`~llmdock.store.journal.Journal`,
each trace is also appended to a write-ahead file before its response is sent, so a crash loses none.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from llmdock.errors import StoreUnavailable
from llmdock.store import traces
from llmdock.store.engine import Store, _short
from llmdock.store.journal import Journal, orphans, read_journal
from llmdock.store.trace_records import TraceRecord

log = logging.getLogger("llmdock.traces")


class TraceWriter:
    """Buffers finished traces and writes them in batches from a background thread."""

    def __init__(
        self,
        store: Store,
        *,
        batch_size: int = 256,
        flush_interval_s: float = 0.2,
        max_buffer: int = 100_000,
        prepare: Callable[[TraceRecord], None] | None = None,
        journal: Journal | None = None,
    ) -> None:
        self.store = store
        # Called once per trace before it is persisted (privacy: redact, encrypt): in the writer's thread, or
        # with a journal on the caller's, before the trace is journaled (nothing reaches disk unprepared).
        self.prepare = prepare
        self.journal = journal
        # With a journal: the lowest sequence number dropped from memory (the buffer overflowed while the
        # store was away). Segments from it on stay on disk and are stored at the next start.
        self._kept_from = 0
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._buffer: collections.deque[TraceRecord] = collections.deque(maxlen=max_buffer)
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._in_flight = 0  # traces taken from the buffer by the batch being written
        self.written = 0
        self.dropped = 0
        self.deferred = 0  # dropped from memory but kept in the journal: stored at the next start
        self.last_error = ""
        self.failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="llmdock-trace-writer", daemon=True)
        self._thread.start()

    @property
    def refusing(self) -> bool:
        """Whether new requests should be refused (:attr:`Journal.refusing`)."""
        return self.journal is not None and self.journal.refusing

    def submit(self, record: TraceRecord) -> asyncio.Future[None] | None:
        """Queue a finished trace (journaled first, if there is a journal). Never blocks on the database.

        With ``journal_sync: fsync``, returns a future done when the trace is on disk (await it before
        answering); else None: the journal has the trace when this returns.
        """
        synced = None
        if self.journal is not None:
            if self.prepare is not None and not record.prepared and not self._prepared(record):
                return None
            record.seq = self.journal.append(record)
            if record.seq:
                synced = self.journal.synced()
        with self._cond:
            if len(self._buffer) == self._buffer.maxlen:
                self._overflow(self._buffer[0])
            self._buffer.append(record)
            if len(self._buffer) >= self.batch_size:
                self._cond.notify()
        return synced

    def status(self) -> dict[str, Any]:
        with self._cond:  # one consistent snapshot: the writer thread updates these under the same lock
            state: dict[str, Any] = {
                "ok": self.failing_since is None,
                "pending": len(self._buffer) + self._in_flight,
                "written": self.written,
                "dropped": self.dropped,
                "last_error": self.last_error,
            }
            if self.journal is not None:
                state["dropped"] += self.journal.lost
                state["journal"] = {"bytes": self.journal.size, "deferred_to_restart": self.deferred}
            return state

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written; False if that did not happen in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify()
        while time.monotonic() < deadline:
            with self._cond:
                if not self._buffer and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 10.0) -> None:
        if self.journal is not None and self.failing_since is not None:
            # The store is away and the journal holds every trace: waiting for the store loses nothing by
            # being short (the next start stores what the journal holds), and a stop should not hang on it.
            timeout = min(timeout, 1.0)
        flushed = self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=2)
        if self.journal is not None:
            # Everything stored: the journal goes. Else it stays, and the next start stores what it holds.
            self.journal.close(remove=flushed and not self._kept_from and self.failing_since is None)

    def adopt_orphans(self) -> int:
        """Store the traces in the journals of processes that are gone (a crash); how many were missing.

        Straight into the store when it answers (before this process serves anything); else each trace goes
        into this process's journal and buffer, to be stored when the store is back. Either way the orphan
        journal is removed only once its traces are safe, and the store never holds a trace twice.
        """
        assert self.journal is not None
        recovered = 0
        for directory in orphans(self.journal.root):
            records = list(read_journal(directory))
            try:
                if not self.store.migrated:
                    self.store.migrate()
                todo = traces.missing(self.store, records)
                for start in range(0, len(todo), self.batch_size):
                    traces.write_traces(self.store, todo[start : start + self.batch_size])
            except Exception as exc:  # the store is away (or refuses): keep them in this journal
                log.warning("storing %d journaled traces later: %s", len(records), _short(exc))
                todo = records
                for rec in records:
                    self.submit(rec)
            if todo:
                log.warning("recovered %d traces from %s (a crashed process's journal)", len(todo), directory)
            recovered += len(todo)
            shutil.rmtree(directory, ignore_errors=True)
        return recovered

    def _prepared(self, rec: TraceRecord) -> bool:
        """Run ``prepare`` on a trace; False (the trace dropped, counted) if it fails."""
        assert self.prepare is not None
        if prepare_record(self.prepare, rec):
            return True
        with self._cond:
            self.dropped += 1
        return False

    def _overflow(self, oldest: TraceRecord) -> None:
        """The buffer is full and drops ``oldest``: lost, unless the journal keeps it for the next start."""
        if oldest.seq:
            self._kept_from = min(self._kept_from or oldest.seq, oldest.seq)
            self.deferred += 1
        else:
            self.dropped += 1

    def _run(self) -> None:
        backoff = self.flush_interval_s
        while True:
            with self._cond:
                if not self._buffer and not self._stop:
                    self._cond.wait(timeout=self.flush_interval_s)
                if self._stop and (not self._buffer or self.failing_since is not None):
                    return
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._busy = bool(batch)
                self._in_flight = len(batch)
            if not batch:
                continue
            try:
                self._write(batch)
            except Exception as exc:  # the store is unreachable (or broken): keep the traces, retry later
                error = exc.message if isinstance(exc, StoreUnavailable) else _short(exc)
                with self._cond:
                    # Put what is left of the batch back at the front, oldest first; the deque's bound
                    # drops the oldest.
                    overflow = len(self._buffer) + len(batch) - (self._buffer.maxlen or 0)
                    for rec in list(self._buffer)[-overflow:] if overflow > 0 else ():
                        self._overflow(rec)  # extendleft drops from the right: the newest
                    self._buffer.extendleft(reversed(batch))
                    self._busy = False
                    self._in_flight = 0
                    newly_failing = self.failing_since is None
                    if newly_failing:
                        self.failing_since = time.monotonic()
                    self.last_error = error
                if newly_failing:
                    log.warning("trace store unreachable, keeping traces in memory: %s", error)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if self._stop:
                    return
                continue
            with self._cond:
                # Updated with _busy so that once flush() returns True, status() says so too.
                self._busy = False
                self._in_flight = 0
                recovered = self.failing_since is not None
                self.failing_since = None
                self.last_error = ""
                pending = len(self._buffer)
            if recovered:
                log.warning("trace store reachable again; %d traces pending", pending)
            backoff = self.flush_interval_s

    def _write(self, batch: list[TraceRecord]) -> None:
        """Store ``batch``, emptying it. Raises if the store fails, leaving in ``batch`` what is not stored."""
        if self.prepare is not None:
            self._prepare(batch)
        last_seq = max((rec.seq for rec in batch), default=0)
        written, dropped = store_batch(self.store, batch)
        with self._cond:
            self.written += written
            self.dropped += dropped
        self._stored(last_seq)

    def _stored(self, seq: int) -> None:
        """Tell the journal that every trace up to ``seq`` is stored (short of any kept for the next start)."""
        if self.journal is not None and seq:
            self.journal.stored(min(seq, self._kept_from - 1) if self._kept_from else seq)

    def _prepare(self, batch: list[TraceRecord]) -> None:
        """Run ``prepare`` on each trace not yet prepared; a trace it fails on is dropped, never stored as is."""
        assert self.prepare is not None
        kept = []
        for rec in batch:
            if not rec.prepared:
                try:
                    self.prepare(rec)
                    rec.prepared = True
                except Exception as exc:
                    log.error("trace %s dropped: preparing it failed (%s)", rec.id, type(exc).__name__)
                    continue
            kept.append(rec)
        if len(kept) < len(batch):
            with self._cond:
                self.dropped += len(batch) - len(kept)
            batch[:] = kept


def _refused(exc: BaseException) -> bool:
    """Whether the error comes from what the traces hold (retrying them cannot help), not from the store."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, SQLAlchemyError | StoreUnavailable):
        # Other database errors (connection lost, timeouts, missing tables) are the store's; but an error
        # SQLAlchemy raised while preparing parameters, before reaching the database, is the record's.
        return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)
    return isinstance(exc, TypeError | ValueError)


def store_batch(store: Store, batch: list[TraceRecord], *, yield_gil: bool = True) -> tuple[int, int]:
    """Store ``batch`` (emptying it): how many traces were written and how many the store refused (dropped).

    Raises if the store fails (unreachable, broken), leaving in ``batch`` what is not stored. Traces back from
    a journal (``replayed``) may be stored already: those are skipped, so a replay stores each once.
    """
    if not store.migrated:
        # The store was unreachable when it was opened: create the schema before the first write.
        store.migrate()
    if any(rec.replayed for rec in batch):
        batch[:] = traces.missing(store, batch)
    try:
        traces.write_traces(store, batch, yield_gil=yield_gil)
    except Exception as exc:
        if not _refused(exc):
            raise
    else:
        written = len(batch)
        batch.clear()
        return written, 0
    # The database refused something in the batch (a NUL character or a NaN for PostgreSQL, a duplicate
    # id, a value that is not JSON): write the traces one by one and drop only those it refuses, so that
    # one bad trace cannot hold back every trace after it.
    written = dropped = 0
    while batch:
        try:
            traces.write_traces(store, batch[:1])
        except Exception as exc:
            if not _refused(exc):
                raise
            log.warning("trace %s refused by the store and dropped: %s", batch[0].id, _short(exc))
            dropped += 1
        else:
            written += 1
        del batch[0]
    return written, dropped


def prepare_record(prepare: Callable[[TraceRecord], None], rec: TraceRecord) -> bool:
    """Run ``prepare`` (privacy: redact, encrypt) on a trace and mark it prepared; False, logged, if it
    fails (the caller drops the trace and counts it: nothing is stored unprepared)."""
    try:
        prepare(rec)
    except Exception as exc:
        log.error("trace %s dropped: preparing it failed (%s)", rec.id, type(exc).__name__)
        return False
    rec.prepared = True
    return True
