"""The records a finished request leaves: a trace and one span per pipeline stage (stored by store/traces.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class SpanRecord:
    name: str
    started_at: datetime
    duration_ms: float
    status: str = "ok"
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class StoredSpan:
    """A span as the store gives it back (spans are stored on their trace's row, as JSON)."""

    trace_id: str
    seq: int
    name: str
    started_at: datetime
    duration_ms: float
    status: str
    attributes: dict[str, Any]


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
    # Not stored: the trace's sequence number in this process's journal (0: not journaled), and whether it
    # came back from a journal at start-up (it may be in the store already).
    seq: int = 0
    replayed: bool = False
    # Not stored either: PII analyses the request's guards made, {(engine, text): analysis}, for the privacy
    # policy to reuse when it prepares the trace (it takes them off the record before anything is written).
    pii_analyses: dict[tuple[object, str], object] | None = None
