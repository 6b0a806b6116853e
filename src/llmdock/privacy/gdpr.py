"""Data-subject requests: export and erase everything linked to a subject (retention: llmdock.store.retention).

A subject is the end user a request was made for: the request's OpenAI ``user`` field, else the user that
owns the calling key. Traces carry it in ``traces.subject``. Audit rows about a subject name it only by a
keyed pseudonym (``subject:<hmac>``), so erasing the subject leaves no identifier in the append-only log.
Conversation memory (``kb_memory``, the memory stage's turns) is exported and erased with the subject.
Caches are not searched: their entries expire after ``cache.ttl_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update

from llmdock.store import audit, usage_hours
from llmdock.store.access_views import key_view, user_view
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.feedback_rows import FeedbackRow, feedback_view
from llmdock.store.kb_rows import KbMemoryRow, opened_memory
from llmdock.store.keyring import Keyring, open_trace_bodies
from llmdock.store.models import ApiKey, AuditRow, StoredResponse, Trace, User
from llmdock.store.monitor_eval_rows import EvalClaim
from llmdock.store.responses import open_data, responses_of
from llmdock.store.trace_records import StoredSpan
from llmdock.store.traces import stored_spans


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def subject_pseudonym(secret: bytes, subject: str) -> str:
    return "subject:" + hmac.new(secret, subject.encode(), hashlib.sha256).hexdigest()[:24]


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
        for i in range(0, len(trace_ids), 500):
            chunk = trace_ids[i : i + 500]
            usage_hours.forget(s, chunk)  # the usage totals kept per hour lose them too
            s.execute(delete(Trace).where(Trace.id.in_(chunk)))
            s.execute(delete(EvalClaim).where(EvalClaim.trace_id.in_(chunk)))
        feedback = s.execute(delete(FeedbackRow).where(FeedbackRow.subject.in_(ids))).rowcount  # type: ignore[attr-defined]
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
        "feedback_deleted": feedback or 0,
        "memory_turns_deleted": memory or 0,
        "keys_revoked": revoked,
        "user_anonymised": user is not None,
    }
    audit.record(store, "data.erase", actor, target=anon, after=report)
    return report
