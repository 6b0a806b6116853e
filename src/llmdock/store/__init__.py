"""Persistence: the Store (SQLAlchemy + Alembic), the trace records written into it, the audit log.

``keyring`` is the interface through which the store opens sealed values (implemented by ``llmdock.privacy``);
the store imports no other llmdock package but ``errors``.
"""

from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.journal import Journal
from llmdock.store.keyring import DecryptionError, Keyring
from llmdock.store.trace_records import SpanRecord, TraceRecord
from llmdock.store.trace_writer import TraceWriter
from llmdock.store.traces import (
    count_traces,
    get_trace,
    list_traces,
    write_traces,
)

__all__ = [
    "Actor",
    "DecryptionError",
    "Journal",
    "Keyring",
    "SpanRecord",
    "Store",
    "TraceRecord",
    "TraceWriter",
    "count_traces",
    "get_trace",
    "list_traces",
    "write_traces",
]
