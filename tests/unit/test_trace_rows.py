"""write_traces builds its rows by hand (for speed): they must cover every field of a TraceRecord."""

from __future__ import annotations

from dataclasses import fields

from llmdock.store.trace_records import TraceRecord
from llmdock.store.traces import _TRACE_COLUMNS


def test_trace_rows_write_every_field_of_a_trace_record() -> None:
    assert sorted(_TRACE_COLUMNS) == sorted(
        f.name for f in fields(TraceRecord) if f.name not in ("prepared", "seq", "replayed", "pii_analyses")
    )
