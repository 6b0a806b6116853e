"""Alert rules on the stored traces: evaluated on their schedule, deduplicated, silenced, stored, sent.

Each rule (``alerts.rules``) names a metric computed from the traces of a window (trace_stats.py), per model,
and a condition: ``threshold`` (above / below a bound), ``change`` (the relative change from the window before,
above / below a fraction) or ``anomaly`` (more than ``sigmas`` from the mean of the same metric over the
``baseline``'s earlier windows). A rule that fires on a model opens a firing (store/monitor_rows.py); while it
keeps firing, evaluations only update that row, and it is sent again no sooner than ``silence`` later;
``llmdock alerts silence`` holds its notifications for a while; the firing is resolved when the condition no
longer holds. The firings of one round are grouped per channel (notify.py).

The gateway runs :class:`AlertLoop` in one worker at a time (a lock file under ``home``): the store is read in
a thread and notifications are sent by background tasks, so neither slow queries nor an unreachable webhook
ever reach a request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from llmdock.config.monitor_settings import AlertRule, AlertSettings
from llmdock.monitor.leader import LeaderLock
from llmdock.monitor.notify import Notice, deliver
from llmdock.monitor.trace_stats import (
    TraceFacts,
    bucket_values,
    by_model,
    load_metric_facts,
    metric_value,
    zscore,
)
from llmdock.store.engine import Store
from llmdock.store.monitor_rows import AlertFiring, AlertSilence

log = logging.getLogger("llmdock.alerts")


@dataclass(frozen=True, slots=True)
class Verdict:
    model: str
    value: float
    firing: bool
    expected: str


def judge(rule: AlertRule, store: Store, now: datetime) -> list[Verdict]:
    """The rule's verdict on each model with traffic in its window (or each model it names)."""
    window = timedelta(seconds=rule.window)
    reach = timedelta(seconds=rule.baseline) if rule.condition == "anomaly" else 2 * window
    facts = by_model(load_metric_facts(store, rule.metric, now - reach, now, rule.models))
    verdicts = []
    for model in rule.models or sorted(facts):
        current = [f for f in facts.get(model, []) if f.created_at >= now - window]
        earlier = [f for f in facts.get(model, []) if f.created_at < now - window]
        if len(current) < rule.min_requests:
            continue
        value = metric_value(rule.metric, current)
        if value is None:
            continue
        verdict = _condition(rule, model, value, earlier, now - reach)
        if verdict is not None:
            verdicts.append(verdict)
    return verdicts


def _condition(
    rule: AlertRule, model: str, value: float, earlier: list[TraceFacts], since: datetime
) -> Verdict | None:
    if rule.condition == "threshold":
        fires = (rule.above is not None and value > rule.above) or (
            rule.below is not None and value < rule.below
        )
        return Verdict(model, value, fires, _bounds(rule))
    if rule.condition == "change":
        before = [f for f in earlier if f.created_at >= since]
        previous = metric_value(rule.metric, before) if len(before) >= rule.min_requests else None
        if not previous:
            return None  # nothing to compare with
        change = (value - previous) / previous
        fires = (rule.above is not None and change > rule.above) or (
            rule.below is not None and change < rule.below
        )
        return Verdict(model, value, fires, f"change {change:+.0%} from {previous:.4g} ({_bounds(rule)})")
    count = int(rule.baseline // rule.window) - 1
    baseline = bucket_values(rule.metric, earlier, since, rule.window, count, max(rule.min_requests, 1))
    if len(baseline) < 5:
        return None  # too little history to call anything unusual
    z, mean, spread = zscore(value, baseline)
    return Verdict(model, value, abs(z) > rule.sigmas, f"baseline {mean:.4g} ± {spread:.4g} (z {z:+.1f})")


def _bounds(rule: AlertRule) -> str:
    parts = ([f"> {rule.above:g}"] if rule.above is not None else []) + (
        [f"< {rule.below:g}"] if rule.below is not None else []
    )
    return " or ".join(parts)


def record(store: Store, rule: AlertRule, verdicts: list[Verdict], now: datetime) -> list[Notice]:
    """Open, update or resolve each model's firing of ``rule``; the notices due now (neither deduplicated nor
    silenced)."""
    due = []
    with store.session() as s, s.begin():
        open_rows = {
            row.model: row
            for row in s.scalars(
                select(AlertFiring).where(AlertFiring.rule == rule.name, AlertFiring.resolved_at.is_(None))
            )
        }
        for v in verdicts:
            row = open_rows.get(v.model)
            if not v.firing:
                if row is not None:
                    row.resolved_at = now
                continue
            message = f"{rule.name}: {rule.metric} of {v.model} is {v.value:.4g} ({v.expected})"
            if row is None:
                row = AlertFiring.opened(
                    now,
                    rule=rule.name,
                    model=v.model,
                    metric=rule.metric,
                    condition=rule.condition,
                    value=v.value,
                    expected=v.expected[:200],
                    message=message,
                )
                s.add(row)
                s.flush()
            else:
                row.repeats += 1
                row.last_seen_at, row.value, row.message = now, v.value, message
            quiet = row.notified_at is not None and now - _aware(row.notified_at) < timedelta(
                seconds=rule.silence
            )
            if quiet or not rule.channels:
                continue
            silence = select(AlertSilence.id).where(
                AlertSilence.rule == rule.name,
                AlertSilence.model.in_(["", v.model]),
                AlertSilence.until > now,
            )
            if s.scalars(silence.limit(1)).first() is not None:
                row.deliveries = {**row.deliveries, "silenced": now.isoformat()}
                continue
            row.notified_at = now
            due.append(_notice(row, repeat=row.repeats > 0))
    return due


def _notice(row: AlertFiring, *, repeat: bool) -> Notice:
    return Notice(
        row.id,
        row.rule,
        row.model,
        row.metric,
        row.condition,
        row.value,
        row.expected,
        row.message,
        _aware(row.fired_at).isoformat(),
        repeat,
    )


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def notify(store: Store, settings: AlertSettings, notices: dict[str, list[Notice]]) -> dict[str, str]:
    """Send each rule's notices to its channels, one grouped message per channel; store the outcomes on the
    firings. Returns channel -> outcome."""
    per_channel: dict[str, list[Notice]] = {}
    for rule in settings.rules:
        for name in rule.channels:
            per_channel.setdefault(name, []).extend(notices.get(rule.name, []))
    per_channel = {name: ns for name, ns in per_channel.items() if ns}
    outcomes = await asyncio.gather(
        *(deliver(name, settings.channels[name], ns) for name, ns in per_channel.items())
    )
    result = dict(zip(per_channel, outcomes, strict=True))
    await asyncio.to_thread(_store_outcomes, store, per_channel, result)
    return result


def _store_outcomes(store: Store, per_channel: dict[str, list[Notice]], result: dict[str, str]) -> None:
    with store.session() as s, s.begin():
        for name, ns in per_channel.items():
            for n in ns:
                row = s.get(AlertFiring, n.id)
                if row is not None:
                    row.deliveries = {**row.deliveries, name: result[name]}


def evaluate(store: Store, rules: list[AlertRule], now: datetime) -> dict[str, list[Notice]]:
    """Judge and record ``rules`` now: rule name -> the notices due."""
    due: dict[str, list[Notice]] = {}
    for rule in rules:
        try:
            due[rule.name] = record(store, rule, judge(rule, store, now), now)
        except Exception:  # one broken rule must not stop the others
            log.exception("alert rule %s: cannot evaluate", rule.name)
    return due


class AlertLoop:
    """Evaluates each rule on its schedule in the background, in one process at a time."""

    def __init__(self, settings: AlertSettings, store: Store, home: Path) -> None:
        self.settings = settings
        self.store = store
        self.lock = LeaderLock(home / "alerts.lock")
        self._due: dict[str, float] = {}
        self._sending: set[asyncio.Task[dict[str, str]]] = set()

    async def run(self) -> None:
        tick = min(5.0, *(r.every for r in self.settings.rules))
        loop = asyncio.get_running_loop()
        while True:
            try:
                if self.lock.held():
                    now = loop.time()
                    rules = [r for r in self.settings.rules if self._due.get(r.name, 0.0) <= now]
                    for r in rules:
                        self._due[r.name] = now + r.every
                    if rules:
                        await self.round(rules)
            except Exception:  # e.g. the store is away: try again at the next tick
                log.exception("alerts: evaluation failed")
            await asyncio.sleep(tick)

    async def round(self, rules: list[AlertRule]) -> asyncio.Task[dict[str, str]]:
        """Evaluate ``rules`` now (in a thread) and start sending what is due (a background task)."""
        due = await asyncio.to_thread(evaluate, self.store, rules, datetime.now(UTC))
        task = asyncio.get_running_loop().create_task(self._send(due))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return task

    async def _send(self, due: dict[str, list[Notice]]) -> dict[str, str]:
        try:
            return await notify(self.store, self.settings, due)
        except Exception:  # recording the outcome failed (the store is away): the notices were sent or logged
            log.exception("alerts: cannot record the deliveries")
            return {}

    def close(self) -> None:
        for task in self._sending:
            task.cancel()
        self.lock.release()
