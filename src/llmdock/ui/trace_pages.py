"""Traces: the filtered list (keyset pages; an htmx request gets only the rows) and one trace's page: the
stage waterfall from its spans, request and response as stored (redacted), guard verdicts, feedback and
the prompt version it used. Every query is limited to the viewer's team."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import InvalidRequest, LlmdockError
from llmdock.feedback import FeedbackBook
from llmdock.privacy.gdpr import subject_pseudonym
from llmdock.store.engine import Store
from llmdock.store.keyring import open_trace_bodies
from llmdock.store.models import Trace
from llmdock.store.traces import stored_spans
from llmdock.ui.pages import Ui, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_query import list_page, load_trace, parse_filters

GUARD_PREFIXES = ("guard_in.", "guard_out.")


def store_of(ui: Ui) -> Store:
    if ui.runtime.store is None:
        raise InvalidRequest("the dashboard needs the store (trace.enabled, database_url)")
    return ui.runtime.store


async def traces(request: Request, viewer: Viewer, ui: Ui) -> Response:
    store = store_of(ui)
    filters, problems = parse_filters(request.query_params)
    user = filters.user
    subjects = [user, subject_pseudonym(ui.runtime.auth.secret, user)] if user else None
    rows, next_cursor = await asyncio.to_thread(list_page, store, filters, viewer.scope, subjects)
    context: dict[str, Any] = {
        "filters": filters,
        "problems": problems,
        "rows": rows,
        "next_query": filters.query_string(after=next_cursor) if next_cursor else None,
        "first_query": filters.query_string(after=""),
        "models": sorted(ui.runtime.backends),
        "prompts": await asyncio.to_thread(_prompt_names, ui),
    }
    partial = request.headers.get("hx-request") == "true" and request.headers.get("hx-target") == "results"
    status = 400 if problems and not partial else 200  # htmx swaps only 2xx answers in
    return render(request, "trace_rows.html" if partial else "traces.html", viewer, status, **context)


def _prompt_names(ui: Ui) -> list[str]:
    return [n for n, _, _ in ui.runtime.prompts.registry.names()] if ui.runtime.prompts is not None else []


@dataclass(frozen=True, slots=True)
class Bar:
    """One span drawn in the waterfall: offsets in percent of the trace's length."""

    name: str
    depth: int
    start_ms: float
    duration_ms: float
    status: str
    left: float
    width: float


def waterfall(trace: Trace) -> list[Bar]:
    spans = stored_spans(trace)
    base = trace.created_at
    starts = [(sp.started_at - base).total_seconds() * 1000 for sp in spans]
    total = max([trace.duration_ms, *(s + sp.duration_ms for s, sp in zip(starts, spans, strict=True))])
    total = total or 1.0
    names = {sp.name for sp in spans}
    return [
        Bar(
            sp.name,
            1 if sp.name.rsplit(".", 1)[0] in names and "." in sp.name else 0,
            start,
            sp.duration_ms,
            sp.status,
            round(100 * max(start, 0.0) / total, 2),
            round(max(100 * sp.duration_ms / total, 0.3), 2),
        )
        for sp, start in zip(spans, starts, strict=True)
    ]


def guard_verdicts(trace: Trace) -> list[dict[str, Any]]:
    """Each detector's verdict, from the guard stages' spans."""
    out = []
    for span in trace.spans or []:
        name, attrs = str(span.get("name", "")), span.get("attributes") or {}
        if name.startswith(GUARD_PREFIXES) and "flagged" in attrs:
            out.append(
                {"name": name, **{k: attrs.get(k) for k in ("score", "threshold", "flagged", "action")}}
            )
    return out


def bodies(store: Store, trace: Trace) -> tuple[list[dict[str, Any]] | None, str, str]:
    """(the messages, or None for a non-chat input; the input as JSON text; the output) as stored, opened if
    sealed; a body that cannot be opened is shown as why."""
    try:
        inputs, output = open_trace_bodies(store.keyring, trace.id, trace.input, trace.output)
    except LlmdockError as exc:
        return None, f"({exc.one_line()})", f"({exc.one_line()})"
    messages = inputs.get("messages") if isinstance(inputs, dict) else None
    if not (isinstance(messages, list) and all(isinstance(m, dict) for m in messages)):
        messages = None
    return messages, json.dumps(inputs, indent=2, ensure_ascii=False, default=str), output


def _trace_page_data(store: Store, trace_id: str, viewer: Viewer) -> dict[str, Any]:
    trace = load_trace(store, trace_id, viewer.scope)
    messages, input_text, output = bodies(store, trace)
    book = FeedbackBook(store)
    feedback = book.views(book.rows(viewer.scope, trace_id=trace.id))
    attrs = trace.attributes or {}
    prompt = attrs.get("llmdock.prompt_template")
    return {
        "trace": trace,
        "bars": waterfall(trace),
        "verdicts": guard_verdicts(trace),
        "messages": messages,
        "input_text": input_text,
        "output": output,
        "feedback": feedback,
        "attributes": sorted((k, json.dumps(v, default=str)) for k, v in attrs.items()),
        "prompt": (str(prompt), attrs.get("llmdock.prompt_version")) if prompt else None,
        "served": served_version(attrs),
    }


def served_version(attrs: dict[str, Any]) -> tuple[str, str] | None:
    """(model name, version) of the registered model version that answered (``models:/NAME/3`` settings
    record ``llmdock.served_model_version`` as ``NAME/3``), or None."""
    name, _, version = str(attrs.get("llmdock.served_model_version") or "").rpartition("/")
    return (name, version) if name and version.isdigit() else None


async def trace_page(request: Request, viewer: Viewer, ui: Ui) -> Response:
    data = await asyncio.to_thread(_trace_page_data, store_of(ui), request.path_params["trace_id"], viewer)
    return render(request, "trace.html", viewer, **data)


ROUTES = [
    ("/traces", "GET", traces, False),
    ("/traces/{trace_id}", "GET", trace_page, False),
]
