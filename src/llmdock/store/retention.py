"""Retention: delete the traces older than their period (``retention.traces_days`` and per model/team
``retention.rules``), with what hangs on them.

A trace's period is the first matching rule's, else the default; each period deletes in chunks of
``CHUNK`` traces, one transaction each, through the ``(model, created_at, id)`` / ``(team_id, created_at, id)``
and ``created_at`` indexes. The online evaluator's claims on a deleted trace (``monitor_eval_claims``, one row per
sampled trace and rule) and the feedback on it (its comments and corrections quote the conversation) go in the
same transaction, so neither outlives its trace, and the deleted traces leave the kept hourly totals (``usage_hours.forget``). The purge is audited when it deleted anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, select

from llmdock.store import audit, usage_hours
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.models import Trace
from llmdock.store.monitor_eval_rows import EvalClaim
from llmdock.store.trace_policy import Match, RetentionPolicy

CHUNK = 1000


def purge(store: Store, policy: RetentionPolicy, actor: Actor, *, now: datetime | None = None) -> int:
    """Apply ``policy`` now: how many traces were deleted."""
    now = now or datetime.now(UTC)
    deleted: list[int] = []
    feedback = 0
    for clause, days in policy.scopes():
        if days is None:  # kept
            deleted.append(0)
            continue
        condition = and_(clause, Trace.created_at < now - timedelta(days=days))
        traces, on_them = _delete_where(store, condition)
        deleted.append(traces)
        feedback += on_them
    finite = [days for _, days in policy.rules] + [policy.default]
    if all(d is not None for d in finite):
        # Claims on traces deleted earlier some other way (by hand, before claims went with their traces):
        # older than the longest period, their trace is gone in any case.
        oldest = now - timedelta(days=max(d for d in finite if d is not None))
        with store.session() as s, s.begin():
            s.execute(delete(EvalClaim).where(EvalClaim.trace_created_at < oldest))
            # feedback older than that is on a trace older still: gone already (purged before feedback went
            # with its traces)
            old = delete(FeedbackRow).where(FeedbackRow.created_at < oldest)
            feedback += s.execute(old).rowcount or 0  # type: ignore[attr-defined]
    total = sum(deleted)
    if total or feedback:
        after: dict[str, object] = {"older_than_days": policy.default, "traces_deleted": total}
        after["feedback_deleted"] = feedback
        if policy.rules:
            after["rules"] = [_describe(m, d) for m, d in policy.rules]
            after["deleted_by_rule"] = deleted[: len(policy.rules)]
        audit.record(store, "retention.purge", actor, after=after)
    return total


def _delete_where(store: Store, condition: object) -> tuple[int, int]:
    """Delete the traces matching ``condition`` with their claims and feedback: (traces, feedback rows)."""
    total = feedback = 0
    while True:
        with store.session() as s, s.begin():
            ids = list(s.scalars(select(Trace.id).where(condition).limit(CHUNK)))  # type: ignore[arg-type]
            if not ids:
                return total, feedback
            usage_hours.forget(s, ids)
            s.execute(delete(EvalClaim).where(EvalClaim.trace_id.in_(ids)))
            on_them = delete(FeedbackRow).where(FeedbackRow.trace_id.in_(ids))
            feedback += s.execute(on_them).rowcount or 0  # type: ignore[attr-defined]
            s.execute(delete(Trace).where(Trace.id.in_(ids)))
            total += len(ids)


def _describe(match: Match, days: int | None) -> dict[str, object]:
    return {"model": sorted(match.models), "team": sorted(match.teams), "traces_days": days}
