"""Retention: delete the traces older than their period (``retention.traces_days`` and per model/team
``retention.rules``), with what hangs on them.

A trace's period is the first matching rule's, else the default; each period deletes in chunks of
``CHUNK`` traces, one transaction each, through the ``(model, created_at, id)`` / ``(team_id, created_at, id)``
and ``created_at`` indexes. The online evaluator's claims on a deleted trace (``monitor_eval_claims``, one row per
sampled trace and rule) go in the same transaction, so no claim outlives its trace. Feedback rows stay (their
scores are the users' and the evaluator's judgement, kept for reports; GDPR erasure deletes them by subject).
The purge is audited when it deleted anything.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, select

from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.models import Trace
from llmdock.store.monitor_eval_rows import EvalClaim
from llmdock.store.trace_policy import Match, RetentionPolicy

CHUNK = 1000


def purge(store: Store, policy: RetentionPolicy, actor: Actor, *, now: datetime | None = None) -> int:
    """Apply ``policy`` now: how many traces were deleted."""
    now = now or datetime.now(UTC)
    deleted: list[int] = []
    for clause, days in policy.scopes():
        cutoff = None if days is None else now - timedelta(days=days)
        deleted.append(0 if cutoff is None else _delete_where(store, and_(clause, Trace.created_at < cutoff)))
    finite = [days for _, days in policy.rules] + [policy.default]
    if all(d is not None for d in finite):
        # Claims on traces deleted earlier some other way (by hand, before claims went with their traces):
        # older than the longest period, their trace is gone in any case.
        oldest = now - timedelta(days=max(d for d in finite if d is not None))
        with store.session() as s, s.begin():
            s.execute(delete(EvalClaim).where(EvalClaim.trace_created_at < oldest))
    total = sum(deleted)
    if total:
        after: dict[str, object] = {"older_than_days": policy.default, "traces_deleted": total}
        if policy.rules:
            after["rules"] = [_describe(m, d) for m, d in policy.rules]
            after["deleted_by_rule"] = deleted[: len(policy.rules)]
        audit.record(store, "retention.purge", actor, after=after)
    return total


def _delete_where(store: Store, condition: object) -> int:
    total = 0
    while True:
        with store.session() as s, s.begin():
            ids = list(s.scalars(select(Trace.id).where(condition).limit(CHUNK)))  # type: ignore[arg-type]
            if not ids:
                return total
            s.execute(delete(EvalClaim).where(EvalClaim.trace_id.in_(ids)))
            s.execute(delete(Trace).where(Trace.id.in_(ids)))
            total += len(ids)


def _describe(match: Match, days: int | None) -> dict[str, object]:
    return {"model": sorted(match.models), "team": sorted(match.teams), "traces_days": days}
