"""Data-subject requests: export and erase everything linked to a subject (retention: llmdock.store.retention).

A subject is the end user a request was made for: the request's OpenAI ``user`` field, else the user that
owns the calling key. Traces carry it in ``traces.subject``. Audit rows about a subject name it only by a
keyed pseudonym (``subject:<hmac>``), so erasing the subject leaves no identifier in the append-only log.
Conversation memory (``kb_memory``, the memory stage's turns) is exported and erased with the subject, and can
be erased by conversation (``erase_session``: its turns, summaries and traces).
Caches are not searched: their entries expire after ``cache.ttl_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Text, cast, delete, or_, select, update
from sqlalchemy.orm import Session

from llmdock.errors import InvalidRequest
from llmdock.store import audit, usage_hours
from llmdock.store.access_views import key_view, user_view
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.feedback_rows import FeedbackRow, feedback_view
from llmdock.store.kb_rows import KbMemoryRow, opened_memory
from llmdock.store.keyring import Keyring, open_trace_bodies
from llmdock.store.models import ApiKey, AuditRow, StoredResponse, Team, Trace, User
from llmdock.store.monitor_eval_rows import EvalClaim
from llmdock.store.responses import open_data, responses_of
from llmdock.store.trace_records import StoredSpan
from llmdock.store.traces import stored_spans


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def subject_pseudonym(secret: bytes, subject: str, kind: str = "subject") -> str:
    return f"{kind}:" + hmac.new(secret, subject.encode(), hashlib.sha256).hexdigest()[:24]


def trace_view(trace: Trace, spans: list[StoredSpan], keyring: Keyring | None = None) -> dict[str, Any]:
    row = {c.name: getattr(trace, c.name) for c in Trace.__table__.columns}
    # Bodies stored encrypted (privacy.encrypt_bodies) are exported in the clear: the subject's own data.
    row["input"], row["output"] = open_trace_bodies(keyring, trace.id, trace.input, trace.output)
    row["spans"] = [{k: v for k, v in asdict(sp).items() if k != "trace_id"} for sp in spans]
    return jsonable(row)  # type: ignore[no-any-return]


def _subject_ids(subject: str, user: User | None, secret: bytes) -> set[str]:
    """How traces may name the subject: as given or as its pseudonym (privacy.pii on), and its user id."""
    ids = {subject} | ({user.id} if user else set())
    return ids | {subject_pseudonym(secret, i) for i in ids}


def _user_for(s: Any, subject: str) -> User | None:
    return s.get(User, subject) or s.scalar(select(User).where(User.name == subject))  # type: ignore[no-any-return]


def export_subject(store: Store, subject: str, actor: Actor, secret: bytes) -> dict[str, Any]:
    """Everything linked to a subject, as JSON-ready data; the export itself is audited."""
    with store.session() as s:
        user = _user_for(s, subject)
        ids = _subject_ids(subject, user, secret)
        traces = list(s.scalars(select(Trace).where(Trace.subject.in_(ids)).order_by(Trace.created_at)))
        keys = list(s.scalars(select(ApiKey).where(ApiKey.user_id == user.id))) if user else []
        targets = {subject_pseudonym(secret, subject)} | ({user.id} | {k.id for k in keys} if user else set())
        rows = list(s.scalars(select(AuditRow).where(AuditRow.target.in_(targets)).order_by(AuditRow.seq)))
        feedback = list(s.scalars(select(FeedbackRow).where(FeedbackRow.subject.in_(ids))))
        memory = [
            {
                "session": m.session,
                "role": m.role,
                "content": opened_memory(store.keyring, m.id, m.content),  # sealed: exported in the clear
                "created_at": m.created_at,
            }
            for m in s.scalars(
                select(KbMemoryRow).where(KbMemoryRow.subject.in_(ids)).order_by(KbMemoryRow.id)
            )
        ]
    stored = [
        {"id": r.id, "created_at": r.created_at, **open_data(store.keyring, r.id, r.data)}
        for r in responses_of(store, ids)
    ]
    data = {
        "subject": subject,
        "exported_at": datetime.now(UTC).isoformat(),
        "user": user_view(user) if user else None,
        "keys": [key_view(k) for k in keys],
        "traces": [trace_view(t, stored_spans(t), store.keyring) for t in traces],
        "audit": [audit.row_view(r) for r in rows],
        "responses": stored,  # stored Responses API answers (/v1/responses)
        "feedback": [feedback_view(f, store.keyring) for f in feedback],  # scores, comments, corrections
        "memory": memory,  # conversation turns kept by the memory stage
    }
    after = {"traces": len(traces), "keys": len(keys), "responses": len(stored), "feedback": len(feedback)}
    audit.record(store, "data.export", actor, target=subject_pseudonym(secret, subject), after=after)
    return jsonable(data)  # type: ignore[no-any-return]


def erase_subject(store: Store, subject: str, actor: Actor, secret: bytes) -> dict[str, Any]:
    """Delete the subject's traces and stored responses; if it is a user, revoke its keys and anonymise the
    user row."""
    anon = subject_pseudonym(secret, subject)
    now = datetime.now(UTC)
    with store.session() as s, s.begin():
        user = _user_for(s, subject)
        ids = _subject_ids(subject, user, secret)
        trace_ids = list(s.scalars(select(Trace.id).where(Trace.subject.in_(ids))))
        feedback = _delete_traces(s, trace_ids)
        feedback += s.execute(delete(FeedbackRow).where(FeedbackRow.subject.in_(ids))).rowcount or 0  # type: ignore[attr-defined]
        responses = s.execute(delete(StoredResponse).where(StoredResponse.subject.in_(ids))).rowcount  # type: ignore[attr-defined]
        memory = s.execute(delete(KbMemoryRow).where(KbMemoryRow.subject.in_(ids))).rowcount  # type: ignore[attr-defined]
        revoked = 0
        if user is not None:
            revoked = (
                s.execute(
                    update(ApiKey)
                    .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=now)
                ).rowcount  # type: ignore[attr-defined]
                or 0
            )
            user.name = "erased-" + anon.split(":", 1)[1][:12]
    report = {
        "subject": anon,
        "traces_deleted": len(trace_ids),
        "responses_deleted": responses or 0,
        "feedback_deleted": feedback,
        "memory_turns_deleted": memory or 0,
        "keys_revoked": revoked,
        "user_anonymised": user is not None,
    }
    audit.record(store, "data.erase", actor, target=anon, after=report)
    return report


def _delete_traces(s: Session, trace_ids: list[str]) -> int:
    """Delete the traces and what is kept per trace elsewhere; returns how many feedback rows went with them."""
    feedback = 0
    for i in range(0, len(trace_ids), 500):
        chunk = trace_ids[i : i + 500]
        usage_hours.forget(s, chunk)  # the usage totals kept per hour lose them too
        s.execute(delete(Trace).where(Trace.id.in_(chunk)))
        s.execute(delete(EvalClaim).where(EvalClaim.trace_id.in_(chunk)))
        gone = s.execute(delete(FeedbackRow).where(FeedbackRow.trace_id.in_(chunk))).rowcount  # type: ignore[attr-defined]
        feedback += gone or 0
    return feedback


def _named_session(spans: Any, session: str) -> bool:
    return isinstance(spans, list) and any(
        isinstance(sp, dict)
        and sp.get("name") == "memory"
        and (sp.get("attributes") or {}).get("llmdock.memory.session") == session
        for sp in spans
    )


def session_traces(s: Session, session: str) -> dict[str, str]:
    """The traces of a conversation, by id with their team: those that stored its turns (``kb_memory.trace_id``)
    and those whose ``memory`` span names it (requests that failed, or stored nothing). Traces have no session
    column, so the spans' JSON text is searched for the id as a JSON string (a scan of the traces table, as
    either JSON writer spells it) and each match confirmed by its parsed spans."""
    linked = select(Trace.id, Trace.team_id).join(KbMemoryRow, KbMemoryRow.trace_id == Trace.id)
    found = {tid: team for tid, team in s.execute(linked.where(KbMemoryRow.session == session))}
    spelled = {orjson.dumps(session).decode(), json.dumps(session)}
    text = cast(Trace.spans, Text)
    candidates = s.execute(
        select(Trace.id, Trace.team_id, Trace.spans).where(
            or_(*(text.contains(sp, autoescape=True) for sp in spelled)),
        )
    )
    found.update({str(tid): str(team) for tid, team, spans in candidates if _named_session(spans, session)})
    return found


def _session_team(s: Session, session: str, team: str | None, teams: set[str], where: str) -> str:
    """The team whose conversation ``session`` is: sessions are per team, so an id found in several needs
    ``team`` (a team id or name)."""
    if team is None and len(teams) > 1:
        names = ", ".join(sorted(repr(t) for t in teams))
        raise InvalidRequest(f"session {session!r} exists in teams {names}: name one", where=where)
    if team is None or team in teams or not teams:  # nothing of it anywhere: nothing to erase
        return next(iter(teams), "") if team is None else team
    named = set(s.scalars(select(Team.id).where(Team.name == team))) & teams
    if len(named) != 1:
        raise InvalidRequest(f"no conversation {session!r} in team {team!r}", where=where)
    return named.pop()


def erase_session(
    store: Store, session: str, actor: Actor, secret: bytes, team: str | None = None, *, where: str = "--team"
) -> dict[str, Any]:
    """Delete one conversation: its memory turns and summaries, and its traces (with their feedback). The
    erasure is audited under a keyed pseudonym of the session id, as a subject's is. ``where``: what an error
    about ``team`` names (the CLI's option or the API's field)."""
    anon = subject_pseudonym(secret, session, kind="session")
    with store.session() as s, s.begin():
        traces = session_traces(s, session)
        in_memory = set(s.scalars(select(KbMemoryRow.team_id).where(KbMemoryRow.session == session)))
        owner = _session_team(s, session, team, in_memory | set(traces.values()), where)
        trace_ids = [tid for tid, t in traces.items() if t == owner]
        feedback = _delete_traces(s, trace_ids)
        memory = s.execute(
            delete(KbMemoryRow).where(KbMemoryRow.session == session, KbMemoryRow.team_id == owner)
        ).rowcount  # type: ignore[attr-defined]
    report = {
        "session": anon,
        "team": owner,
        "memory_turns_deleted": memory or 0,
        "traces_deleted": len(trace_ids),
        "feedback_deleted": feedback,
    }
    audit.record(store, "data.erase_session", actor, target=anon, after=report)
    return report
