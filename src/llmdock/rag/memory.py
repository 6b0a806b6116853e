"""The ``memory`` stage: conversation memory by session id.

A chat request carrying an ``x-llmdock-session`` header gets the previous turns of that session (its team's:
sessions never cross teams) put before its own messages, after any system messages. At most
``rag.memory_turns`` exchanges are loaded; the oldest are dropped until the history takes no more than
``rag.memory_share`` of the model's window and the whole prompt still fits with room for ``max_tokens``,
counted by the backend's own tokenizer. The rest of the window is left to the question, the ``ground``
stage's sources (listed after ``memory``, it drops sources only once the history is trimmed) and the answer.

When the request succeeds, its last user turn (as sent, before any sources were added) and the answer are
stored in ``kb_memory`` with the request's subject, so a GDPR erase of the subject deletes them; with
``privacy.pii`` on they are stored redacted, as traces are (the next turn then sees the redacted text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from llmdock.backends.base import Backend, GenerationRequest
from llmdock.config import Settings
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.env import StageEnv
from llmdock.pipeline.stages import flatten_content
from llmdock.privacy.gdpr import subject_pseudonym
from llmdock.privacy.privacy_policy import PrivacyPolicy
from llmdock.rag.window import shrink_to_fit
from llmdock.store import Store
from llmdock.store.kb_rows import KbMemoryRow

log = logging.getLogger(__name__)
TURN_OVERHEAD = 8  # tokens a chat template adds around one message (role markers), counted generously


@dataclass(frozen=True)
class Turn:
    role: str
    content: str

    def message(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


def load_turns(store: Store, team: str, session: str, exchanges: int) -> list[Turn]:
    """The session's last ``exchanges`` user/assistant pairs, oldest first."""
    with store.session() as s:
        rows = s.scalars(
            select(KbMemoryRow)
            .where(KbMemoryRow.team_id == team, KbMemoryRow.session == session)
            .order_by(KbMemoryRow.id.desc())
            .limit(exchanges * 2)
        )
        turns = [Turn(r.role, r.content) for r in rows]
    turns.reverse()
    if turns and turns[0].role != "user":
        turns = turns[1:]  # the limit cut an exchange in two
    return turns


def save_exchange(
    store: Store, ctx: RequestContext, question: str, privacy: PrivacyPolicy | None = None
) -> None:
    """Store the question and the answer, redacted per ``privacy.pii`` like traces (the subject as its
    pseudonym then, which GDPR erase also looks for)."""
    texts, subject = [question, ctx.output_text], ctx.subject
    if privacy is not None and privacy.engine is not None:
        texts = privacy.redact_json(texts)
        if subject and privacy.subject_key:
            subject = subject_pseudonym(privacy.subject_key, subject)
    now = datetime.now(UTC)
    with store.session() as s, s.begin():
        for role, content in zip(("user", "assistant"), texts, strict=True):
            s.add(
                KbMemoryRow(
                    team_id=ctx.team_id,
                    session=ctx.session,
                    subject=subject,
                    role=role,
                    content=content,
                    trace_id=ctx.trace_id,
                    created_at=now,
                )
            )


def fitting(backend: Backend, req: GenerationRequest, turns: list[Turn], share: float) -> list[Turn]:
    """The newest turns that fit the window (whole exchanges; the oldest go first); all without a window."""
    window = backend.context_window
    if not window:
        return turns
    backend.prepare(req)  # the request alone: what is left of the window
    budget = min(int(window * share), window - req.n_prompt_tokens - (req.params.max_tokens or 0))
    kept = len(turns)
    used = 0
    for i in range(len(turns) - 1, -1, -1):
        used += backend.count_tokens(turns[i].content) + TURN_OVERHEAD
        if used > budget:
            break
        if turns[i].role == "user":
            kept = i
    return turns[kept:]


class MemoryStage:
    name = "memory"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.privacy: PrivacyPolicy | None = None
        self._saving: dict[tuple[str, str], asyncio.Future[None]] = {}

    def bind(self, env: StageEnv) -> None:
        self.store = env.store
        self.privacy = env.privacy

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        req = ctx.request
        if not ctx.session or self.store is None or req is None or req.messages is None:
            return ctx
        users = [m for m in req.messages if m.get("role") == "user"]
        if not users or ctx.generation is not None:
            return ctx
        key = (ctx.team_id, ctx.session)
        pending = self._saving.get(key)
        if pending is not None:  # this process's last answer in the session is stored before it is read
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        rag = self.settings.rag
        turns = await asyncio.to_thread(load_turns, self.store, ctx.team_id, ctx.session, rag.memory_turns)
        at = next((i for i, m in enumerate(req.messages) if m.get("role") != "system"), len(req.messages))
        own = list(req.messages)

        def write(kept: list[Turn]) -> None:
            req.messages = own[:at] + [t.message() for t in kept] + own[at:]

        kept = fitting(ctx.backend, req, turns, rag.memory_share)
        kept = shrink_to_fit(ctx.backend, req, kept, write, lambda k: k[2:])  # the oldest exchange goes
        ctx.annotate(**{"llmdock.memory.session": ctx.session, "llmdock.memory.turns": len(kept)})
        if len(kept) < len(turns):
            ctx.annotate(**{"llmdock.memory.dropped": len(turns) - len(kept)})
        question = flatten_content(users[-1].get("content"))
        ctx.on_success.append(lambda done: self._save(done, question))
        return ctx

    def _save(self, ctx: RequestContext, question: str) -> None:
        assert self.store is not None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a caller outside the event loop (a batch job)
            save_exchange(self.store, ctx, question, self.privacy)
            return
        key = (ctx.team_id, ctx.session)
        saving = loop.run_in_executor(None, save_exchange, self.store, ctx, question, self.privacy)
        self._saving[key] = saving

        def done(future: asyncio.Future[None]) -> None:
            if self._saving.get(key) is future:
                del self._saving[key]
            if not future.cancelled() and future.exception() is not None:
                log.error("memory: session %r: turn not stored: %s", ctx.session, future.exception())

        saving.add_done_callback(done)
