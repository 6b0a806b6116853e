"""Trace records, their batched writer, and the queries the CLI uses.

The gateway never waits for the database: finished traces go into a bounded in-memory buffer that a
background thread flushes in batches. When the store is unreachable the writer keeps the traces, retries
with backoff, and reports the failure (``status()``, shown on ``/ready``); it drops the oldest traces only
once ``max_buffer`` is exceeded, and counts what it dropped.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from llmdock.errors import NotFound, StoreUnavailable
from llmdock.store.engine import Store, _short
from llmdock.store.keyring import open_trace_bodies
from llmdock.store.models import Span, Trace

log = logging.getLogger("llmdock.traces")


@dataclass(slots=True)
class SpanRecord:
    name: str
    started_at: datetime
    duration_ms: float
    status: str = "ok"
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TraceRecord:
    id: str
    created_at: datetime
    operation: str
    model: str
    status: str
    duration_ms: float
    backend: str = ""
    http_status: int = 200
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    error: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    output: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    deployment: str = ""
    cost: float = 0.0
    cache: str = ""
    subject: str = ""
    api_key_id: str = ""
    team_id: str = ""
    spans: list[SpanRecord] = field(default_factory=list)
    prepared: bool = False  # the writer's ``prepare`` hook (privacy) has run on it


# The columns in the order write_traces builds its rows (a test checks that they are all of TraceRecord's).
_TRACE_COLUMNS = (
    *("id", "created_at", "operation", "model", "status", "duration_ms", "backend", "http_status", "stream"),
    *("prompt_tokens", "completion_tokens", "finish_reason", "error", "input", "output", "attributes"),
    *("deployment", "cost", "cache", "subject", "api_key_id", "team_id"),
)
_SPAN_COLUMNS = ("trace_id", "seq", "name", "started_at", "duration_ms", "status", "attributes")
_JSON_COLUMNS = frozenset({"input", "attributes"})
ROWS_BETWEEN_YIELDS = 16
_SQLITE_TIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLAlchemy's storage format for SQLite DATETIME


def _insert(dialect: str, table: str, columns: tuple[str, ...]) -> str:
    if dialect == "postgresql":  # psycopg, positional; JSON text is cast by the server
        marks = ["%s::json" if c in _JSON_COLUMNS else "%s" for c in columns]
    else:
        marks = ["?"] * len(columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})"


_INSERTS = {
    dialect: (_insert(dialect, "traces", _TRACE_COLUMNS), _insert(dialect, "spans", _SPAN_COLUMNS))
    for dialect in ("sqlite", "postgresql")
}


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _sqlite_time(when: datetime) -> str:
    t = _utc(when)
    return _SQLITE_TIME % (t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond)


def write_traces(store: Store, records: list[TraceRecord]) -> None:
    """Insert traces and their spans in one transaction.

    Rows go to the driver's ``executemany`` as tuples, with the values the ORM types would store (JSON
    text from ``json.dumps``, times in UTC, on SQLite in SQLAlchemy's text format), built here: SQLAlchemy's
    per-row parameter processing was most of the writer's CPU, which it spends holding the GIL that the
    event loop waits for (about 80 -> 50 us of CPU per trace, measured on a loaded 2-core machine).

    Building rows holds the GIL; every ROWS_BETWEEN_YIELDS traces this yields it, so that a request
    arriving meanwhile waits for at most one slice (a fraction of a millisecond) instead of the
    interpreter's 5 ms switch interval. bench/trace_writer.py measures the lateness of the event loop's
    timers while the writer stores 2,000 traces/s (loaded machine): P99 12-30 ms without the yields,
    6-10 ms with them, against 4-9 ms with no writer at all.
    """
    inserts = _INSERTS.get(store.engine.dialect.name)
    if inserts is None:
        raise StoreUnavailable(f"traces cannot be written to a {store.engine.dialect.name} database")
    when = _sqlite_time if store.engine.dialect.name == "sqlite" else _utc
    dumps = json.dumps
    trace_rows: list[tuple[Any, ...]] = []
    span_rows: list[tuple[Any, ...]] = []
    for start in range(0, len(records), ROWS_BETWEEN_YIELDS):
        if start:
            time.sleep(0)  # let a thread waiting for the GIL (the event loop) run now
        chunk = records[start : start + ROWS_BETWEEN_YIELDS]
        trace_rows += [
            (
                rec.id,
                when(rec.created_at),
                rec.operation,
                rec.model,
                rec.status,
                rec.duration_ms,
                rec.backend,
                rec.http_status,
                int(rec.stream),
                rec.prompt_tokens,
                rec.completion_tokens,
                rec.finish_reason,
                rec.error,
                dumps(rec.input),
                rec.output,
                dumps(rec.attributes),
                rec.deployment,
                rec.cost,
                rec.cache,
                rec.subject,
                rec.api_key_id,
                rec.team_id,
            )
            for rec in chunk
        ]
        span_rows += [
            (rec.id, i, s.name, when(s.started_at), s.duration_ms, s.status, dumps(s.attributes))
            for rec in chunk
            for i, s in enumerate(rec.spans)
        ]
    with store.engine.begin() as conn:
        conn.exec_driver_sql(inserts[0], trace_rows)
        if span_rows:
            conn.exec_driver_sql(inserts[1], span_rows)


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
    ) -> None:
        self.store = store
        # Called once per trace in the writer's thread before it is stored (privacy: redact, encrypt).
        self.prepare = prepare
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._buffer: collections.deque[TraceRecord] = collections.deque(maxlen=max_buffer)
        self._cond = threading.Condition()
        self._stop = False
        self._busy = False
        self._in_flight = 0  # traces taken from the buffer by the batch being written
        self.written = 0
        self.dropped = 0
        self.last_error = ""
        self.failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="llmdock-trace-writer", daemon=True)
        self._thread.start()

    def submit(self, record: TraceRecord) -> None:
        """Queue a finished trace. Never blocks on the database."""
        with self._cond:
            if len(self._buffer) == self._buffer.maxlen:
                self.dropped += 1
            self._buffer.append(record)
            if len(self._buffer) >= self.batch_size:
                self._cond.notify()

    def status(self) -> dict[str, Any]:
        with self._cond:  # one consistent snapshot: the writer thread updates these under the same lock
            return {
                "ok": self.failing_since is None,
                "pending": len(self._buffer) + self._in_flight,
                "written": self.written,
                "dropped": self.dropped,
                "last_error": self.last_error,
            }

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
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=2)

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
                    self.dropped += max(0, overflow)
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
        if not self.store.migrated:
            # The store was unreachable when it was opened: create the schema before the first write.
            self.store.migrate()
        try:
            write_traces(self.store, batch)
        except Exception as exc:
            if not _refused(exc):
                raise
        else:
            with self._cond:
                self.written += len(batch)
            batch.clear()
            return
        # The database refused something in the batch (a NUL character or a NaN for PostgreSQL, a duplicate
        # id, a value that is not JSON): write the traces one by one and drop only those it refuses, so that
        # one bad trace cannot hold back every trace after it.
        while batch:
            try:
                write_traces(self.store, batch[:1])
            except Exception as exc:
                if not _refused(exc):
                    raise
                log.warning("trace %s refused by the store and dropped: %s", batch[0].id, _short(exc))
                with self._cond:
                    self.dropped += 1
            else:
                with self._cond:
                    self.written += 1
            del batch[0]

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


def list_traces(store: Store, *, limit: int = 20, model: str | None = None) -> list[Trace]:
    with store.session() as s:
        q = select(Trace).order_by(Trace.created_at.desc()).limit(limit)
        if model:
            q = q.where(Trace.model == model)
        traces = list(s.scalars(q))
    # Without a key the list is still shown (it holds no bodies); with one, the bodies come decrypted.
    return [_opened(store, t) for t in traces] if store.keyring is not None else traces


def _opened(store: Store, trace: Trace) -> Trace:
    """The trace with its bodies decrypted, if they were stored encrypted (privacy.encrypt_bodies)."""
    trace.input, trace.output = open_trace_bodies(store.keyring, trace.id, trace.input, trace.output)
    return trace


def get_trace(store: Store, trace_id: str) -> tuple[Trace, list[Span]]:
    """A trace by id or unique id prefix, with its spans in stage order."""
    with store.session() as s:
        # autoescape: a '%' or '_' the user typed is a character of the id, not a LIKE wildcard.
        matches = list(
            s.scalars(select(Trace).where(Trace.id.startswith(trace_id, autoescape=True)).limit(2))
        )
        if not matches:
            raise NotFound(f"no trace with id {trace_id!r}")
        if len(matches) > 1:
            raise NotFound(f"trace id prefix {trace_id!r} is ambiguous; give more characters")
        trace = _opened(store, matches[0])
        spans = list(s.scalars(select(Span).where(Span.trace_id == trace.id).order_by(Span.seq)))
        return trace, spans


def count_traces(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Trace)) or 0)


def delete_all_traces(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(Span))
        conn.execute(delete(Trace))
