"""The trace list's filters and pages: parsed from the query string, run as one indexed SQL query.

Pages are keyset pages, newest first: the cursor is the last row's ``(created_at, id)``, so page 1,000 costs
what page 1 costs (no OFFSET). Filters on model, status and team use the indexes of ``store/ui_rows.py``;
a user (the request's ``user``, stored as given or as its pseudonym
when ``privacy.pii`` is on) uses the subject index; a prompt template and a guard detector's flag
(``_prompt_and_guard``) their partial indexes; latency and time range narrow the same scan; text is a case-insensitive substring of the stored
(redacted) input or output, found through the search index of store/trace_search.py (SQLite FTS5 trigrams,
PostgreSQL pg_trgm; bodies stored encrypted cannot be searched).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Select, String, cast, func, or_, select, tuple_

from llmdock.errors import NotFound
from llmdock.feedback import Scope
from llmdock.store.engine import Store
from llmdock.store.keyring import is_sealed
from llmdock.store.models import Trace
from llmdock.store.trace_search import newest_matching
from llmdock.store.ui_rows import PROMPT_ATTRIBUTE, flagged_spans, trace_attribute
from llmdock.store.usage_hours import BLOCKED

PAGE_ROWS = 50
PREVIEW_CHARS = 120


class TraceFilters(BaseModel):
    """What the filter form sends; every field optional, empty means "any"."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    model: str = Field(default="", max_length=200)
    status: Literal["", "ok", "error", "cancelled"] = ""
    since: datetime | None = None
    until: datetime | None = None
    text: str = Field(default="", max_length=200)
    user: str = Field(default="", max_length=200)  # the end user (``user`` of the request) as stored
    prompt: str = Field(default="", max_length=200)  # the prompt template the request used
    guard: Literal["", "blocked", "flagged", "passed"] = ""  # the guards' verdict
    min_ms: float | None = Field(default=None, ge=0)
    max_ms: float | None = Field(default=None, ge=0)
    after: str = Field(default="", max_length=200)  # the cursor: the last row of the page before

    def query_string(self, **changes: str) -> dict[str, str]:
        """The filters as query parameters (for links to the next page), empty ones left out."""
        out = {
            k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in self if v not in ("", None)
        }
        out.update(changes)
        return {k: v for k, v in out.items() if v}


def parse_filters(params: Mapping[str, str]) -> tuple[TraceFilters, list[str]]:
    """The filters from a query string, and one ``field: message`` per value that made no sense (that
    filter is then left out, so the page still shows something)."""
    data = {k: v for k, v in params.items() if k in TraceFilters.model_fields and v.strip() != ""}
    problems: list[str] = []
    try:
        filters = TraceFilters.model_validate(data)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        filters = TraceFilters.model_validate({k: v for k, v in data.items() if k not in bad})
    if filters.since and filters.until and filters.since > filters.until:
        problems.append("until: must not be before since")
        filters = filters.model_copy(update={"until": None})
    if filters.after and decode_cursor(filters.after) is None:
        problems.append("after: not a page cursor of this list (follow the 'next page' link)")
        filters = filters.model_copy(update={"after": ""})
    return filters, problems


def encode_cursor(created_at: datetime, trace_id: str) -> str:
    raw = f"{_utc(created_at).isoformat()}|{trace_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, trace_id = raw.split("|", 1)
        return _utc(datetime.fromisoformat(when)), trace_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class TraceRow:
    id: str
    created_at: datetime
    duration_ms: float
    model: str
    operation: str
    status: str
    tokens: int
    cost: float
    cache: str
    preview: str


def list_page(
    store: Store, filters: TraceFilters, scope: Scope, subjects: list[str] | None = None
) -> tuple[list[TraceRow], str]:
    """One page of traces the scope may see, newest first, and the cursor of the next page ("" at the end).
    ``subjects``: the ways the store may name ``filters.user`` (as given, and its pseudonym)."""
    q = select(
        Trace.id,
        Trace.created_at,
        Trace.duration_ms,
        Trace.model,
        Trace.operation,
        Trace.status,
        (Trace.prompt_tokens + Trace.completion_tokens).label("tokens"),
        Trace.cost,
        Trace.cache,
        func.substr(Trace.output, 1, PREVIEW_CHARS).label("preview"),
    )
    if scope.team is not None:
        q = q.where(Trace.team_id == scope.team)
    if filters.model:
        q = q.where(Trace.model == filters.model)
    if filters.status:
        q = q.where(Trace.status == filters.status)
    if subjects:
        q = q.where(Trace.subject.in_(subjects))
    if filters.since:
        q = q.where(Trace.created_at >= _utc(filters.since))
    if filters.until:
        q = q.where(Trace.created_at <= _utc(filters.until))
    if filters.min_ms is not None:
        q = q.where(Trace.duration_ms >= filters.min_ms)
    if filters.max_ms is not None:
        q = q.where(Trace.duration_ms <= filters.max_ms)
    q = _prompt_and_guard(q, filters)
    cursor = decode_cursor(filters.after) if filters.after else None
    if cursor is not None:
        q = q.where(tuple_(Trace.created_at, Trace.id) < tuple_(*cursor))
    q = q.order_by(Trace.created_at.desc(), Trace.id.desc()).limit(PAGE_ROWS + 1)
    with store.session() as s:
        # text: through the search index (store/trace_search.py) where it serves
        found = newest_matching(s, q, filters.text, PAGE_ROWS + 1) if filters.text else s.execute(q).all()
        rows = [
            TraceRow(**{**r._mapping, "tokens": int(r.tokens or 0), "preview": _shown(r.preview)})
            for r in found
        ]
    more = len(rows) > PAGE_ROWS
    rows = rows[:PAGE_ROWS]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id) if more else ""


CALM = ('"flagged":false', '"flagged": false')  # a detector's span that did not flag


def _prompt_and_guard(q: Select[Any], filters: TraceFilters) -> Select[Any]:
    """The prompt template (the attribute the prompt stage sets) and the guards' verdict: ``blocked`` (a
    guard refused the request: an error, on the status index), ``flagged`` (a detector flagged, whatever it
    did), ``passed`` (the guards ran and none flagged). The prompt and ``flagged`` have partial indexes of
    their own (store/ui_rows.py, written as the indexes are); ``passed`` holds for most traces, so reading
    rows newest first fills a page at once."""
    if filters.prompt:
        q = q.where(trace_attribute(PROMPT_ATTRIBUTE) == filters.prompt)
    if filters.guard == "blocked":
        q = q.where(Trace.status == "error", Trace.error.startswith(BLOCKED, autoescape=True))
    elif filters.guard == "flagged":
        q = q.where(flagged_spans())
    elif filters.guard == "passed":
        spans = cast(Trace.spans, String)
        q = q.where(or_(*(spans.contains(w, autoescape=True) for w in CALM)), ~flagged_spans())
    return q


def _shown(preview: str | None) -> str:
    return "(encrypted)" if is_sealed(preview or "") else (preview or "")


def load_trace(store: Store, trace_id: str, scope: Scope) -> Trace:
    """One trace by its exact id; NotFound alike for an unknown id and another team's trace."""
    with store.session() as s:
        trace = s.get(Trace, trace_id)
    if trace is None or not scope.allows(trace):
        raise NotFound(f"no trace {trace_id!r}")
    return trace
