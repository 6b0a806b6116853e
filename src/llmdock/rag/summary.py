"""Summaries of a session's older turns, for the memory stage (``rag.memory_summary_model``).

When a session's history no longer fits the window, the turns the memory stage dropped are summarised by the
configured model once the request has been answered (a task on the event loop: the request that dropped them
does not wait), together with the session's previous summary. The summary is stored as a ``kb_memory`` row of
role ``summary`` whose ``covers_to`` is the newest turn it summarises, with the request's subject, so GDPR
export lists it and erase deletes it with the turns. The session's next requests get the newest summary in
their system message and only the turns after it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from llmdock.backends.base import Backend, GenerationRequest, SamplingParams
from llmdock.rag.window import shrink_to_fit
from llmdock.store import Store
from llmdock.store.kb_rows import KbMemoryRow, add_memory, opened_memory
from llmdock.store.keyring import Keyring

if TYPE_CHECKING:
    from llmdock.rag.memory import Turn

SUMMARY = "summary"  # the role of a summary row
PREFIX = "Summary of the earlier conversation:"
INSTRUCTION = (
    "Summarise the conversation below for the assistant that continues it. Keep every fact, name, number, "
    "decision and open question the user gave or was given; leave out greetings. Write plain sentences."
)


def load_summary(store: Store, team: str, session: str) -> tuple[str, int] | None:
    """The session's newest summary and the id of the newest turn it covers."""
    with store.session() as s:
        found = s.execute(
            select(KbMemoryRow.id, KbMemoryRow.content, KbMemoryRow.covers_to)
            .where(KbMemoryRow.team_id == team, KbMemoryRow.session == session, KbMemoryRow.role == SUMMARY)
            .order_by(KbMemoryRow.id.desc())
            .limit(1)
        ).first()
    if found is None:
        return None
    return opened_memory(store.keyring, found[0], found[1]), int(found[2] or 0)


def save_summary(
    store: Store,
    team: str,
    session: str,
    subject: str,
    text: str,
    covers_to: int,
    keyring: Keyring | None = None,
) -> None:
    """Store the summary, sealed under ``keyring`` when one is given (``privacy.encrypt_bodies``)."""
    row = KbMemoryRow(
        team_id=team,
        session=session,
        subject=subject,
        role=SUMMARY,
        content=text,
        covers_to=covers_to,
        created_at=datetime.now(UTC),
    )
    with store.session() as s, s.begin():
        add_memory(s, [row], keyring)


def with_summary(messages: list[dict[str, Any]], summary: str) -> list[dict[str, Any]]:
    """``messages`` with the summary at the end of their first system message (one is added if none)."""
    text = f"{PREFIX} {summary}"
    if messages and messages[0].get("role") in ("system", "developer"):
        first = messages[0]
        return [{**first, "content": f"{first.get('content') or ''}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


async def summarise(backend: Backend, previous: str | None, turns: list[Turn], max_tokens: int) -> str:
    """The model's summary of the previous summary and ``turns`` (the oldest turns left out if they do not
    fit the summarising model's window)."""
    req = GenerationRequest("chat", SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=0))
    earlier = f"Summary so far: {previous}\n\n" if previous else ""

    def write(kept: list[Turn]) -> None:
        transcript = "\n".join(f"{t.role}: {t.content}" for t in kept)
        req.messages = [
            {"role": "system", "content": INSTRUCTION},
            {"role": "user", "content": f"{earlier}Conversation:\n{transcript}"},
        ]

    await backend.ensure_started()
    shrink_to_fit(backend, req, turns, write, lambda k: k[1:])
    generation = await backend.generate(req)
    return generation.text.strip()
