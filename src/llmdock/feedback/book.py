"""Feedback attached to traces: stored redacted (and sealed) like traces, audited, scoped to the trace's team.

A caller names the team it may score (``team``); a trace of another team is answered exactly as an unknown
one (``NotFound``), so a key cannot learn which trace ids exist elsewhere. ``team=None`` is the admin's or
the CLI's view: every team.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from llmdock.errors import NotFound
from llmdock.feedback.scores import FeedbackIn
from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.feedback_rows import FeedbackRow, feedback_view
from llmdock.store.models import Trace

if TYPE_CHECKING:
    from llmdock.privacy.privacy_policy import PrivacyPolicy


@dataclass(frozen=True, slots=True)
class Scope:
    """Which traces a caller may give feedback on: one team's, or (``team`` None) every team's."""

    team: str | None = None

    def allows(self, trace: Trace) -> bool:
        return self.team is None or trace.team_id == self.team


class FeedbackBook:
    def __init__(self, store: Store, privacy: PrivacyPolicy | None = None) -> None:
        self.store = store
        self.privacy = privacy

    def trace(self, trace_id: str, scope: Scope) -> Trace:
        """The trace feedback is about; NotFound alike for an unknown trace and another team's."""
        with self.store.session() as s:
            trace = s.get(Trace, trace_id)
        if trace is None or not scope.allows(trace):
            raise NotFound(f"no trace {trace_id!r}", param="trace_id")
        return trace

    def prepared(self, text: str, row_id: str, field: str) -> str:
        """Text as it may be stored: redacted (privacy.pii), then sealed (privacy.encrypt_bodies)."""
        policy = self.privacy
        if not text or policy is None:
            return text
        text = policy.redact(text)
        if policy.encrypt_bodies and policy.keyring is not None:
            text = policy.keyring.seal_text(text, f"feedback:{row_id}:{field}")
        return text

    def add(self, item: FeedbackIn, actor: Actor, scope: Scope) -> dict[str, Any]:
        """Store one piece of feedback (audited as ``feedback.add``); returns it as stored, text opened."""
        trace = self.trace(item.trace_id, scope)
        name, value = item.score()
        row = self.new_row(
            trace,
            name=name,
            value=value,
            source=item.source,
            created_by=actor.name,
            comment=item.comment,
            correction=item.correction,
        )
        row_id = row.id
        with self.store.session() as s, s.begin():
            s.add(row)
        after = {"id": row_id, "name": name, "value": value, "source": item.source}
        after |= {"comment": bool(item.comment), "correction": bool(item.correction)}
        audit.record(self.store, "feedback.add", actor, target=f"trace:{trace.id}", after=after)
        return feedback_view(row, self.store.keyring)

    def new_row(
        self,
        trace: Trace,
        *,
        name: str,
        value: float | None,
        source: str,
        created_by: str,
        comment: str = "",
        correction: str = "",
        now: datetime | None = None,
    ) -> FeedbackRow:
        """A feedback row on ``trace``, its texts prepared (redacted, sealed), not yet stored: ``add`` stores it
        audited; the online evaluator stores it in the transaction that finishes its claim."""
        row_id = uuid.uuid4().hex
        return FeedbackRow(
            id=row_id,
            trace_id=trace.id,
            created_at=now or datetime.now(UTC),
            name=name,
            value=value,
            comment=self.prepared(comment, row_id, "comment"),
            correction=self.prepared(correction, row_id, "correction"),
            source=source,
            subject=trace.subject,
            team_id=trace.team_id,
            created_by=created_by,
        )

    def rows(
        self, scope: Scope, *, trace_id: str | None = None, limit: int = 50, since: datetime | None = None
    ) -> list[FeedbackRow]:
        """The newest feedback first (of one trace, or since a time)."""
        q = select(FeedbackRow).order_by(FeedbackRow.created_at.desc()).limit(limit)
        if trace_id is not None:
            q = q.where(FeedbackRow.trace_id == trace_id)
        if scope.team is not None:
            q = q.where(FeedbackRow.team_id == scope.team)
        if since is not None:
            q = q.where(FeedbackRow.created_at >= since)
        with self.store.session() as s:
            return list(s.scalars(q))

    def views(self, rows: list[FeedbackRow]) -> list[dict[str, Any]]:
        return [feedback_view(r, self.store.keyring) for r in rows]
