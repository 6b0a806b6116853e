"""Traces → a dataset: each stored chat exchange (its messages plus the answer) as a row, redacted as stored.

The bodies are taken as the store keeps them: whatever the privacy policy redacted or pseudonymised before
they were written stays so (run the ``pii`` step afterwards for more), and encrypted bodies are opened with the
configured key. Filters: the model, a time range, the status (``ok`` by default) and a limit. Traces without a
stored body (``store_bodies`` off), completions without a chat, and answers that fail row validation are
dropped, counted by reason, each named ``trace ID: field: message``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from llmdock.datasets.importing import Report, progress
from llmdock.datasets.rows import Row, RowError, validate
from llmdock.errors import InvalidRequest
from llmdock.store.engine import Store
from llmdock.store.keyring import DecryptionError, open_trace_bodies
from llmdock.store.models import Trace

_AGO = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, where: str) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration ago: ``30m``, ``12h``, ``7d``."""
    m = _AGO.match(text)
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m[2]]: int(m[1])})
    message = f"{text!r} is neither an ISO 8601 time nor a duration like 7d"
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(message, where=where) from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


@dataclass(frozen=True)
class TraceFilter:
    model: str = ""
    since: datetime | None = None
    until: datetime | None = None
    status: str = "ok"
    limit: int | None = None

    def lineage(self) -> dict[str, Any]:
        return {
            "traces": {
                "model": self.model,
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "status": self.status,
                "limit": self.limit,
            }
        }


def _query(f: TraceFilter) -> Any:
    q = select(Trace).order_by(Trace.created_at, Trace.id)
    if f.model:
        q = q.where(Trace.model == f.model)
    if f.status:
        q = q.where(Trace.status == f.status)
    if f.since:
        q = q.where(Trace.created_at >= f.since.astimezone(UTC))
    if f.until:
        q = q.where(Trace.created_at < f.until.astimezone(UTC))
    return q.limit(f.limit) if f.limit else q


def _row(store: Store, trace: Trace) -> Row:
    try:
        inputs, output = open_trace_bodies(store.keyring, trace.id, trace.input, trace.output)
    except DecryptionError as exc:
        raise RowError("input", exc.message, "encrypted") from None
    messages = inputs.get("messages") if isinstance(inputs, dict) else None
    if messages is None:
        raise RowError("input", "holds no chat messages (a completion, or bodies not stored)", "no chat body")
    if not output:
        raise RowError("output", "no answer was stored", "no answer")
    meta = {"trace_id": trace.id, "model": trace.model, "created_at": trace.created_at.isoformat()}
    return validate({"messages": [*messages, {"role": "assistant", "content": output}], **meta})


def trace_rows(store: Store, f: TraceFilter) -> tuple[list[Row], Report]:
    report = Report()
    rows: list[Row] = []
    with store.session() as s, progress("reading traces") as bar:
        task = bar.add_task("traces", total=None)
        for trace in s.scalars(_query(f)):
            report.read += 1
            bar.advance(task)
            try:
                rows.append(_row(store, trace))
            except RowError as exc:
                report.drop(exc.reason, exc.at(f"trace {trace.id}"))
    report.kept = len(rows)
    return rows, report
