"""One window of a model's stored traces, as drift reads it: texts, lengths, tokens, outcomes, and the
online-evaluation scores of its traces."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from llmdock.monitor.scores import by_name, load_scores
from llmdock.monitor.trace_text import last_user_text
from llmdock.store.engine import Store
from llmdock.store.keyring import open_trace_bodies
from llmdock.store.models import Trace


@dataclass(slots=True)
class Window:
    """What one window's traces say: texts, lengths, tokens, outcomes, online-evaluation scores."""

    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    errors: int = 0
    blocked: int = 0
    scores: dict[str, list[float]] = field(default_factory=dict)  # online-evaluation score -> values

    @property
    def n(self) -> int:
        return len(self.prompt_tokens)


def load_window(store: Store, model: str, since: datetime, until: datetime) -> Window:
    q = select(
        Trace.id,
        Trace.input,
        Trace.output,
        Trace.prompt_tokens,
        Trace.completion_tokens,
        Trace.status,
        Trace.error,
    ).where(Trace.model == model, Trace.created_at >= since, Trace.created_at < until)
    w = Window()
    with store.session() as s:
        for row in s.execute(q):
            inputs, output = open_trace_bodies(store.keyring, row.id, row.input, row.output)
            w.inputs.append(last_user_text(inputs if isinstance(inputs, dict) else {}))
            w.outputs.append(output or "")
            w.prompt_tokens.append(row.prompt_tokens or 0)
            w.completion_tokens.append(row.completion_tokens or 0)
            w.errors += row.status == "error"
            w.blocked += (row.error or "").startswith("guard_blocked")
    w.scores = by_name(load_scores(store, since, until, [model]))
    return w
