"""A canary run stored, and its firing opened, updated or resolved; the notice sent through the alert channels
(``llmdock.monitor.notify``: webhook, Slack-compatible, e-mail, each retried with backoff).

Deduplicated by kind of change: while a firing is open, a run that finds only kinds it already names updates it
(``repeats``, ``last_seen_at``, the message) without a notice; a run that finds a new kind (the answers changed,
and now the fingerprint too) notifies again; a run that finds nothing resolves it. ``llmdock alerts silence
canary:NAME`` holds the notices (the firing is stored, marked silenced); ``llmdock alerts list`` lists the
firings among the alert rules'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmdock.config.monitor_settings import AlertChannel
from llmdock.monitor.canary_check import Verdict
from llmdock.monitor.notify import Notice, deliver
from llmdock.store.canary_rows import Canary, CanaryFiring, CanaryRun
from llmdock.store.engine import Store
from llmdock.store.lease import guarded_update
from llmdock.store.monitor_rows import AlertSilence


def _open(s: Session, name: str) -> CanaryFiring | None:
    q = select(CanaryFiring).where(CanaryFiring.canary == name, CanaryFiring.resolved_at.is_(None))
    return s.scalars(q.order_by(CanaryFiring.id.desc()).limit(1)).first()


def resolve_open(store: Store, name: str, now: datetime) -> None:
    with store.session() as s, s.begin():
        firing = _open(s, name)
        if firing is not None:
            firing.resolved_at = now


def claim_baseline(store: Store, name: str, eval_run: str) -> bool:
    """Make ``eval_run`` the canary's baseline if it has none yet: whether it did. One conditional UPDATE, so of
    two first runs that overlap (``canary run`` by hand while the schedule fires) exactly one becomes the
    baseline; the other is compared with it."""
    with store.session() as s, s.begin():
        unset = [Canary.name == name, Canary.baseline_run == ""]
        return guarded_update(s, Canary, unset, {"baseline_run": eval_run})


def record_run(
    store: Store, canary: Canary, eval_run: str, started: datetime, verdict: Verdict | None
) -> tuple[CanaryRun, Notice | None]:
    """Store the run; for a baseline (``verdict`` None) make it the canary's baseline. The notice due now."""
    now = datetime.now(UTC)
    notice = None
    with store.session() as s, s.begin():
        row = CanaryRun(canary=canary.name, eval_run=eval_run, started_at=started, finished_at=now)
        firing = _open(s, canary.name)
        if verdict is None:
            row.status, row.findings = "baseline", []
            stored = s.get(Canary, canary.name)
            if stored is not None:
                stored.baseline_run = eval_run
            canary.baseline_run = eval_run
            if firing is not None:  # a new baseline accepts what changed
                firing.resolved_at = now
        else:
            row.unchanged = verdict.unchanged
            row.findings = [{"kind": f.kind, "message": f.message} for f in verdict.findings]
            row.status = "changed" if verdict.findings else "same"
            if not verdict.findings and firing is not None:
                firing.resolved_at = now
            elif verdict.findings:
                firing, fresh = _fire(s, canary, firing, verdict, now)
                s.flush()
                row.firing_id = firing.id
                if fresh and canary.channels and _silenced(s, canary, now):
                    firing.deliveries = {**firing.deliveries, "silenced": now.isoformat()}
                elif fresh and canary.channels:
                    firing.notified_at = now
                    notice = _notice(canary, firing, verdict)
        s.add(row)
        s.flush()
        s.expunge(row)
    return row, notice


def rule_name(canary: str) -> str:
    """The name a canary's firings go by among the alert rules' (``llmdock alerts list``, ``alerts silence``)."""
    return f"canary:{canary}"


def _silenced(s: Session, canary: Canary, now: datetime) -> bool:
    """Whether ``llmdock alerts silence canary:NAME`` holds the canary's notices now."""
    silence = select(AlertSilence.id).where(
        AlertSilence.rule == rule_name(canary.name),
        AlertSilence.model.in_(["", canary.target]),
        AlertSilence.until > now,
    )
    return s.scalars(silence.limit(1)).first() is not None


def _fire(
    s: Session, canary: Canary, firing: CanaryFiring | None, verdict: Verdict, now: datetime
) -> tuple[CanaryFiring, bool]:
    """The open firing updated, or a new one; whether it names a kind of change not notified before."""
    kinds = list(dict.fromkeys(f.kind for f in verdict.findings))
    message = f"canary {canary.name} on {canary.target}: " + "; ".join(f.message for f in verdict.findings)
    if firing is None:
        firing = CanaryFiring.opened(
            now, canary=canary.name, target=canary.target, kinds=kinds, message=message
        )
        s.add(firing)
        return firing, True
    new = [k for k in kinds if k not in firing.kinds]
    firing.repeats += 1
    firing.last_seen_at, firing.message = now, message
    firing.kinds = [*firing.kinds, *new]
    return firing, bool(new)


def _notice(canary: Canary, firing: CanaryFiring, verdict: Verdict) -> Notice:
    return Notice(
        id=firing.id,
        rule=rule_name(canary.name),
        model=canary.target,
        metric="canary",
        condition="changed",
        value=verdict.unchanged if verdict.unchanged is not None else float("nan"),
        expected=f"the answers of baseline run {canary.baseline_run[:12]}",
        message=firing.message,
        fired_at=firing.fired_at.isoformat(),
        repeat=firing.repeats > 0,
    )


async def send(
    store: Store, canary: Canary, channels: Mapping[str, AlertChannel], notice: Notice
) -> dict[str, str]:
    """Deliver the notice to the canary's channels (each retried with backoff) and store the outcomes."""
    names = [n for n in canary.channels if n in channels]
    outcomes = await asyncio.gather(*(deliver(n, channels[n], [notice]) for n in names))
    result = dict(zip(names, outcomes, strict=True))
    await asyncio.to_thread(_store_deliveries, store, notice.id, result)
    return result


def _store_deliveries(store: Store, firing_id: int, result: dict[str, str]) -> None:
    with store.session() as s, s.begin():
        firing = s.get(CanaryFiring, firing_id)
        if firing is not None:
            firing.deliveries = {**firing.deliveries, **result}


def list_firings(store: Store, name: str | None = None, limit: int = 20) -> list[CanaryFiring]:
    with store.session() as s:
        q = select(CanaryFiring).order_by(CanaryFiring.id.desc()).limit(limit)
        if name:
            q = q.where(CanaryFiring.canary == name)
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows
