"""Persistence: the Store (SQLAlchemy + Alembic), the trace records written into it, the audit log.

``keyring`` is the interface through which the store opens sealed values (implemented by ``llmdock.privacy``);
the store imports no other llmdock package but ``errors``.
"""

from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.keyring import DecryptionError, Keyring
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
    "Actor",
    "DecryptionError",
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
