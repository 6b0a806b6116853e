"""The ``memory`` stage: conversation memory by session id.

A chat request carrying an ``x-llmdock-session`` header gets the previous turns of that session (its team's:
sessions never cross teams) put before its own messages, after any system messages. At most
``rag.memory_turns`` exchanges are loaded; the oldest are dropped until the history takes no more than
``rag.memory_share`` of the model's window and the whole prompt still fits with room for ``max_tokens``,
counted by the backend's own tokenizer. The rest of the window is left to the question, the ``ground``
stage's sources (listed after ``memory``, it drops sources only once the history is trimmed) and the answer.

When the request succeeds, its last user turn (as sent, before any sources were added) and the answer are
stored in ``kb_memory`` with the request's subject, so a GDPR erase of the subject deletes them; with
``privacy.pii`` on they are stored redacted, as traces are (the next turn then sees the redacted text), and
with ``privacy.encrypt_bodies`` sealed under the store's key, as trace bodies are (``kb_rows.add_memory``).

With ``rag.memory_summary_model`` set, the turns the window could not hold are not simply lost: once the
request is answered they are summarised by that model in the background (``llmdock.rag.summary``), and the
session's next requests get the summary in their system message and only the turns after it.
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
from llmdock.rag.summary import SUMMARY, load_summary, save_summary, summarise, with_summary
from llmdock.rag.window import shrink_to_fit
from llmdock.store import Store
from llmdock.store.kb_rows import KbMemoryRow, add_memory, opened_memory
from llmdock.store.keyring import Keyring

log = logging.getLogger(__name__)
TURN_OVERHEAD = 8  # tokens a chat template adds around one message (role markers), counted generously


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    id: int = 0  # its kb_memory row

    def message(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content}


def load_turns(store: Store, team: str, session: str, exchanges: int, after: int = 0) -> list[Turn]:
    """The session's last ``exchanges`` user/assistant pairs newer than row ``after``, oldest first."""
    with store.session() as s:
        rows = s.scalars(
            select(KbMemoryRow)
            .where(
                KbMemoryRow.team_id == team,
                KbMemoryRow.session == session,
                KbMemoryRow.role != SUMMARY,
                KbMemoryRow.id > after,
            )
            .order_by(KbMemoryRow.id.desc())
            .limit(exchanges * 2)
        )
        turns = [Turn(r.role, opened_memory(store.keyring, r.id, r.content), r.id) for r in rows]
    turns.reverse()
    if turns and turns[0].role != "user":
        turns = turns[1:]  # the limit cut an exchange in two
    return turns


def stored_subject(ctx: RequestContext, privacy: PrivacyPolicy | None) -> str:
    """The request's subject as memory rows keep it: its pseudonym when ``privacy.pii`` is on."""
    if privacy is not None and privacy.engine is not None and ctx.subject and privacy.subject_key:
        return subject_pseudonym(privacy.subject_key, ctx.subject)
    return ctx.subject


def save_exchange(
    store: Store, ctx: RequestContext, question: str, privacy: PrivacyPolicy | None = None
) -> None:
    """Store the question and the answer, redacted per ``privacy.pii`` like traces (the subject as its
    pseudonym then, which GDPR erase also looks for), sealed per ``privacy.encrypt_bodies``."""
    texts, subject = [question, ctx.output_text], stored_subject(ctx, privacy)
    if privacy is not None and privacy.engine is not None:
        texts = privacy.redact_json(texts)
    now = datetime.now(UTC)
    rows = [
        KbMemoryRow(
            team_id=ctx.team_id,
            session=ctx.session,
            subject=subject,
            role=role,
            content=content,
            trace_id=ctx.trace_id,
            created_at=now,
        )
        for role, content in zip(("user", "assistant"), texts, strict=True)
    ]
    with store.session() as s, s.begin():
        add_memory(s, rows, sealing(privacy))


def sealing(privacy: PrivacyPolicy | None) -> Keyring | None:
    """The keyring memory is sealed with: the store's, when ``privacy.encrypt_bodies`` is on."""
    return privacy.keyring if privacy is not None and privacy.encrypt_bodies else None


def fitting(
    backend: Backend, req: GenerationRequest, turns: list[Turn], share: float, reserved: int = 0
) -> list[Turn]:
    """The newest turns that fit the window, less ``reserved`` tokens (whole exchanges; the oldest go first);
    all without a window."""
    window = backend.context_window
    if not window:
        return turns
    backend.prepare(req)  # the request alone: what is left of the window
    budget = min(int(window * share), window - req.n_prompt_tokens - (req.params.max_tokens or 0)) - reserved
    kept = len(turns)
    used = 0
    for i in range(len(turns) - 1, -1, -1):
        used += backend.count_tokens(turns[i].content) + TURN_OVERHEAD
        if used > budget:
            break
        if turns[i].role == "user":
            kept = i
    return turns[kept:]


def _drop_oldest(items: list[Turn]) -> list[Turn]:
    """The oldest exchange goes; the summary (first, if any) goes last."""
    if items and items[0].role == SUMMARY:
        return [items[0], *items[3:]] if len(items) > 1 else []
    return items[2:]


class MemoryStage:
    name = "memory"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.env: StageEnv | None = None
        self.privacy: PrivacyPolicy | None = None
        self._saving: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._summarising: dict[tuple[str, str], asyncio.Task[None]] = {}

    def bind(self, env: StageEnv) -> None:
        self.env = env
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
        rag, store = self.settings.rag, self.store
        found = None
        if rag.memory_summary_model:
            found = await asyncio.to_thread(load_summary, store, ctx.team_id, ctx.session)
        summary = found[0] if found else None
        turns = await asyncio.to_thread(
            load_turns, store, ctx.team_id, ctx.session, rag.memory_turns, found[1] if found else 0
        )
        at = next((i for i, m in enumerate(req.messages) if m.get("role") != "system"), len(req.messages))
        own = list(req.messages)

        def write(items: list[Turn]) -> None:
            history = own[:at] + [t.message() for t in items if t.role != SUMMARY] + own[at:]
            has_summary = bool(items) and items[0].role == SUMMARY
            req.messages = with_summary(history, items[0].content) if has_summary else history

        reserved = ctx.backend.count_tokens(summary) + TURN_OVERHEAD if summary else 0
        kept = fitting(ctx.backend, req, turns, rag.memory_share, reserved)
        items = shrink_to_fit(
            ctx.backend, req, [Turn(SUMMARY, summary)] * bool(summary) + kept, write, _drop_oldest
        )
        kept = [t for t in items if t.role != SUMMARY]
        dropped = turns[: len(turns) - len(kept)]
        ctx.annotate(**{"llmdock.memory.session": ctx.session, "llmdock.memory.turns": len(kept)})
        if dropped:
            ctx.annotate(**{"llmdock.memory.dropped": len(dropped)})
        if len(items) > len(kept):
            ctx.annotate(**{"llmdock.memory.summary": True})
        question = flatten_content(users[-1].get("content"))
        ctx.on_success.append(lambda done: self._save(done, question, summary, dropped))
        return ctx

    def _save(self, ctx: RequestContext, question: str, summary: str | None, dropped: list[Turn]) -> None:
        assert self.store is not None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a caller outside the event loop (a batch job): stored, not summarised
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
        if dropped and self.settings.rag.memory_summary_model and key not in self._summarising:
            task = loop.create_task(self._summarise(ctx, summary, dropped))
            self._summarising[key] = task
            task.add_done_callback(lambda t: self._summarised(key, ctx.session, t))

    async def _summarise(self, ctx: RequestContext, previous: str | None, dropped: list[Turn]) -> None:
        """Off the request path: the dropped turns (and the summary before them) summarised and stored."""
        assert self.store is not None
        assert self.env is not None
        rag = self.settings.rag
        text = await summarise(
            self.env.backend(rag.memory_summary_model), previous, dropped, rag.memory_summary_tokens
        )
        subject = stored_subject(ctx, self.privacy)
        await asyncio.to_thread(
            save_summary,
            self.store,
            ctx.team_id,
            ctx.session,
            subject,
            text,
            dropped[-1].id,
            sealing(self.privacy),
        )

    def _summarised(self, key: tuple[str, str], session: str, task: asyncio.Task[None]) -> None:
        self._summarising.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("memory: session %r: turns not summarised: %s", session, task.exception())

    async def settle(self) -> None:
        """Wait for every answer being stored and summary being written (tests; shutdown)."""
        for pending in [*self._saving.values(), *self._summarising.values()]:
            with contextlib.suppress(Exception):
                await pending
