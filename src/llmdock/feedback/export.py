"""Feedback as training and evaluation data: corrections and well-rated answers as chat JSONL.

One line per trace: ``{"messages": [...the request's messages..., {"role": "assistant", "content": ...}],
"metadata": {...}}`` — the assistant turn is the correction when someone gave one (the answer the user
wanted), else the model's own answer when it was rated good (thumbs up, or a rating at or above
``min_rating``). Traces without their bodies (``trace.store_bodies: false``) are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from llmdock.store.engine import Store
from llmdock.store.feedback_rows import FeedbackRow, opened_text
from llmdock.store.keyring import open_trace_bodies
from llmdock.store.models import Trace


@dataclass
class Exported:
    lines: list[dict[str, Any]] = field(default_factory=list)
    corrections: int = 0
    good_answers: int = 0
    skipped_no_body: int = 0


def is_good(row: FeedbackRow, min_rating: int) -> bool:
    if row.value is None:
        return False
    return (row.name == "thumbs" and row.value >= 1) or (row.name == "rating" and row.value >= min_rating)


def _chosen(rows: Iterable[FeedbackRow], store: Store, min_rating: int) -> dict[str, tuple[str, str]]:
    """Per trace: ("correction", text) from its newest correction, else ("good", "") when rated good and
    never rated bad."""
    chosen: dict[str, tuple[str, str]] = {}
    bad: set[str] = set()
    for row in rows:  # newest first
        _, correction = opened_text(store.keyring, row)
        if correction and chosen.get(row.trace_id, ("", ""))[0] != "correction":
            chosen[row.trace_id] = ("correction", correction)
        elif row.name in ("thumbs", "rating") and not is_good(row, min_rating):
            bad.add(row.trace_id)
        elif is_good(row, min_rating):
            chosen.setdefault(row.trace_id, ("good", ""))
    return {t: c for t, c in chosen.items() if c[0] == "correction" or t not in bad}


def chat_dataset(store: Store, *, team: str | None = None, min_rating: int = 4) -> Exported:
    """The dataset lines, oldest trace first."""
    q = select(FeedbackRow).order_by(FeedbackRow.created_at.desc())
    if team is not None:
        q = q.where(FeedbackRow.team_id == team)
    with store.session() as s:
        chosen = _chosen(s.scalars(q), store, min_rating)
        traces = list(s.scalars(select(Trace).where(Trace.id.in_(chosen)).order_by(Trace.created_at)))
    out = Exported()
    for trace in traces:
        inputs, output = open_trace_bodies(store.keyring, trace.id, trace.input, trace.output)
        messages = inputs.get("messages") or (
            [{"role": "user", "content": inputs["prompt"]}] if inputs.get("prompt") else None
        )
        kind, correction = chosen[trace.id]
        answer = correction if kind == "correction" else output
        if not messages or not answer:
            out.skipped_no_body += 1
            continue
        out.lines.append(
            {
                "messages": [*messages, {"role": "assistant", "content": answer}],
                "metadata": {"trace_id": trace.id, "source": kind, "model": trace.model},
            }
        )
        if kind == "correction":
            out.corrections += 1
        else:
            out.good_answers += 1
    return out
