"""Trace records written to the store in one transaction per batch, and the queries the CLI uses.

The batching, retrying writer is store/trace_writer.py; the write-ahead journal store/journal.py.
"""

from __future__ import annotations

import itertools
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, func, select

from llmdock.errors import NotFound, StoreUnavailable
from llmdock.store.engine import Store
from llmdock.store.keyring import open_trace_bodies
from llmdock.store.models import Trace
from llmdock.store.trace_records import StoredSpan, TraceRecord
from llmdock.store.trace_search import newest_matching

log = logging.getLogger("llmdock.traces")


# The columns in the order write_traces builds its rows (a test checks that they are all of TraceRecord's).
_TRACE_COLUMNS = (
    *("id", "created_at", "operation", "model", "status", "duration_ms", "backend", "http_status", "stream"),
    *("prompt_tokens", "completion_tokens", "finish_reason", "error", "input", "output", "attributes"),
    *("deployment", "cost", "cache", "subject", "api_key_id", "team_id", "spans"),
)
_JSON_COLUMNS = frozenset({"input", "attributes", "spans"})
ROWS_BETWEEN_YIELDS = 16
SQLITE_MAX_PARAMS = 32_000  # SQLite's limit on parameters per statement is 32,766 (since 3.32)
_SQLITE_TIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"  # SQLAlchemy's storage format for SQLite DATETIME


def _pg_insert(table: str, columns: tuple[str, ...]) -> str:
    """PostgreSQL's executemany statement: psycopg, positional; JSON text is cast by the server."""
    marks = ["%s::json" if c in _JSON_COLUMNS else "%s" for c in columns]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})"


_PG_INSERT = _pg_insert("traces", _TRACE_COLUMNS)


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _sqlite_time(when: datetime) -> str:
    t = _utc(when)
    return _SQLITE_TIME % (t.year, t.month, t.day, t.hour, t.minute, t.second, t.microsecond)


def _json(value: Any) -> str:
    """JSON text for a JSON column: orjson (several times faster than ``json.dumps``; NaN becomes null rather
    than the token PostgreSQL refuses); values JSON has no type for become strings."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _spans(rec: TraceRecord) -> str:
    """The spans of a trace as JSON: each one's start in ms after the trace's ``created_at`` (cheaper to
    write and smaller than a time stamp per span; :func:`stored_spans` gives times back)."""
    base = rec.created_at
    try:
        starts = [(s.started_at - base).total_seconds() * 1000 for s in rec.spans]
    except TypeError:  # naive and aware times mixed: compare both in UTC
        starts = [(_utc(s.started_at) - _utc(base)).total_seconds() * 1000 for s in rec.spans]
    return _json(
        [
            {
                "name": s.name,
                "start_ms": start,
                "duration_ms": s.duration_ms,
                "status": s.status,
                "attributes": s.attributes,
            }
            for s, start in zip(rec.spans, starts, strict=True)
        ]
    )


def write_traces(store: Store, records: list[TraceRecord], *, yield_gil: bool = True) -> None:
    """Insert traces, each with its spans, in one transaction.

    Rows go to the driver as tuples (PostgreSQL: ``executemany``; SQLite: multi-row INSERTs, see
    :func:`_insert_many_rows`), with the values the ORM types would store (JSON
    text from orjson, times in UTC, on SQLite in SQLAlchemy's text format), built here: SQLAlchemy's
    per-row parameter processing was most of the writer's CPU, which it spends holding the GIL that the
    event loop waits for (about 80 -> 50 us of CPU per trace, measured on a loaded 2-core machine).

    Building rows holds the GIL; every ROWS_BETWEEN_YIELDS traces this yields it, so that a request
    arriving meanwhile waits for at most one slice (a fraction of a millisecond) instead of the
    interpreter's 5 ms switch interval. bench/trace_writer.py measures the lateness of the event loop's
    timers while the writer stores 2,000 traces/s (loaded machine): P99 12-30 ms without the yields,
    6-10 ms with them, against 4-9 ms with no writer at all. The ingester process has no event loop beside
    it: it passes ``yield_gil=False``.
    """
    dialect = store.engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise StoreUnavailable(f"traces cannot be written to a {dialect} database")
    when = _sqlite_time if dialect == "sqlite" else _utc
    dumps = _json
    trace_rows: list[tuple[Any, ...]] = []
    for start in range(0, len(records), ROWS_BETWEEN_YIELDS):
        if start and yield_gil:
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
                _spans(rec),
            )
            for rec in chunk
        ]
    with store.engine.begin() as conn:
        if dialect == "sqlite":
            _insert_many_rows(conn, "traces", _TRACE_COLUMNS, trace_rows)
        else:
            conn.exec_driver_sql(_PG_INSERT, trace_rows)


def _insert_many_rows(conn: Any, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    """SQLite: rows in multi-row INSERT statements, not ``executemany``.

    sqlite3's executemany releases and retakes the GIL around every row's step; each retake waits for the
    event loop's thread to be switched out (up to the 5 ms switch interval), so a batch of 256 traces and
    their spans took ~250 ms of wall time and put up to tens of milliseconds on requests served meanwhile
    (P99 at c=1: 14-55 ms with traces on, 0.3-0.4 ms with them off). A few statements retake it a few times.

    Statements hold a power of two of rows (or the most a statement may bind): each distinct row count is a
    distinct statement that sqlite3 keeps prepared in its cache (128 per connection), and a batch's size
    varies with the load, so the ingester's memory grew by ~60 MiB over the first ~200 batch sizes it met.
    """
    per_statement = max(1, SQLITE_MAX_PARAMS // len(columns))
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    one = "(" + ", ".join("?" * len(columns)) + ")"
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = per_statement if left >= per_statement else 1 << (left.bit_length() - 1)
        chunk = rows[start : start + size]
        conn.exec_driver_sql(
            head + ", ".join([one] * len(chunk)), tuple(itertools.chain.from_iterable(chunk))
        )
        start += size


def missing(store: Store, records: list[TraceRecord]) -> list[TraceRecord]:
    """The records whose trace is not in the store yet (a journal replayed after a crash may hold both)."""
    ids = [rec.id for rec in records]
    found: set[str] = set()
    with store.engine.connect() as conn:
        for start in range(0, len(ids), 500):
            found.update(conn.scalars(select(Trace.id).where(Trace.id.in_(ids[start : start + 500]))))
    return [rec for rec in records if rec.id not in found]


def list_traces(
    store: Store,
    *,
    limit: int = 20,
    model: str | None = None,
    status: str | None = None,
    text: str | None = None,
) -> list[Trace]:
    """The newest traces, optionally of one model, one status, holding ``text`` (store/trace_search.py)."""
    with store.session() as s:
        q = select(Trace).order_by(Trace.created_at.desc(), Trace.id.desc()).limit(limit)
        if model:
            q = q.where(Trace.model == model)
        if status:
            q = q.where(Trace.status == status)
        traces = [r[0] for r in newest_matching(s, q, text, limit)] if text else list(s.scalars(q))
    # Without a key the list is still shown (it holds no bodies); with one, the bodies come decrypted.
    return [_opened(store, t) for t in traces] if store.keyring is not None else traces


def _opened(store: Store, trace: Trace) -> Trace:
    """The trace with its bodies decrypted, if they were stored encrypted (privacy.encrypt_bodies)."""
    trace.input, trace.output = open_trace_bodies(store.keyring, trace.id, trace.input, trace.output)
    return trace


def get_trace(store: Store, trace_id: str) -> tuple[Trace, list[StoredSpan]]:
    """A trace by id or unique id prefix, with its spans in stage order."""
    with store.session() as s:
        exact = s.get(Trace, trace_id)  # a whole id: the primary key, whatever the database's collation
        # autoescape: a '%' or '_' the user typed is a character of the id, not a LIKE wildcard.
        matches = (
            [exact]
            if exact is not None
            else list(s.scalars(select(Trace).where(Trace.id.startswith(trace_id, autoescape=True)).limit(2)))
        )
        if not matches:
            raise NotFound(f"no trace with id {trace_id!r}")
        if len(matches) > 1:
            raise NotFound(f"trace id prefix {trace_id!r} is ambiguous; give more characters")
        trace = _opened(store, matches[0])
        return trace, stored_spans(trace)


def stored_spans(trace: Trace) -> list[StoredSpan]:
    """A stored trace's spans in stage order (times back as UTC datetimes)."""
    base = _utc(trace.created_at)
    return [
        StoredSpan(
            trace.id,
            seq,
            str(s.get("name", "")),
            base + timedelta(milliseconds=float(s.get("start_ms", 0.0))),
            float(s.get("duration_ms", 0.0)),
            str(s.get("status", "")),
            s.get("attributes") or {},
        )
        for seq, s in enumerate(trace.spans or [])
    ]


def count_traces(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Trace)) or 0)


def delete_all_traces(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(delete(Trace))
