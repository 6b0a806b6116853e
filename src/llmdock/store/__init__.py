"""Persistence: the Store (SQLAlchemy + Alembic) and the trace records written into it."""

from llmdock.store.engine import Store
from llmdock.store.traces import (
    SpanRecord,
    TraceRecord,
    TraceWriter,
    count_traces,
    get_trace,
    list_traces,
    write_traces,
)

__all__ = [
    "SpanRecord",
    "Store",
    "TraceRecord",
    "TraceWriter",
    "count_traces",
    "get_trace",
    "list_traces",
    "write_traces",
]
