"""Schedules kept in the store, and the loop that fires them (``llmdock jobs scheduler``, or ``llmdock serve
--scheduler``).

Once per slot, however many runners: a runner that finds a slot due inserts its row in ``job_schedule_fires``
(primary key: schedule and slot) before running it; a second runner's insert of the same slot fails, and it
moves on. The misfire policy (``schedule_spec``) decides what a slot found later than ``grace_s`` becomes:
``missed`` (``skip``) or run once (``run_once``). Slots older than the newest due one are not run either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from llmdock.errors import LlmdockError, NotFound
from llmdock.jobs.schedule_spec import ScheduleSpec, due_slots, next_slot
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import JobSchedule, JobScheduleFire

log = logging.getLogger(__name__)


def add_schedule(
    store: Store, path: Path, params: dict[str, Any], spec: ScheduleSpec, by: str
) -> JobSchedule:
    row = JobSchedule(
        id=secrets.token_hex(16),
        path=str(path.resolve()),
        params=params,
        cron=spec.cron,
        tz=spec.tz,
        misfire=spec.misfire,
        grace_s=spec.grace_s,
        enabled=True,
        created_by=by,
        created_at=datetime.now(UTC),
    )
    with store.session() as s, s.begin():
        s.add(row)
    return row


@dataclass
class ScheduleView:
    schedule: JobSchedule
    last: JobScheduleFire | None
    next_at: datetime


def list_schedules(store: Store) -> list[ScheduleView]:
    """Every schedule with its newest claimed slot and the next one."""
    now = datetime.now(UTC)
    with store.session() as s:
        rows = list(s.scalars(select(JobSchedule).order_by(JobSchedule.created_at)))
        out = []
        for row in rows:
            last = s.scalars(
                select(JobScheduleFire)
                .where(JobScheduleFire.schedule_id == row.id)
                .order_by(JobScheduleFire.slot.desc())
                .limit(1)
            ).first()
            out.append(ScheduleView(row, last, next_slot(row.cron, row.tz, now)))
    return out


def remove_schedule(store: Store, ref: str) -> JobSchedule:
    with store.session() as s, s.begin():
        found = list(s.scalars(select(JobSchedule).where(JobSchedule.id.startswith(ref, autoescape=True))))
        if len(found) != 1:
            raise NotFound(f"no schedule {ref!r}" if not found else f"{ref!r} names {len(found)} schedules")
        s.delete(found[0])
    return found[0]


def claim(store: Store, schedule_id: str, slot: datetime, status: str, owner: str) -> bool:
    """Insert the slot's row; False when another runner inserted it first (it runs it, not this one)."""
    try:
        with store.session() as s, s.begin():
            s.add(
                JobScheduleFire(
                    schedule_id=schedule_id,
                    slot=slot.astimezone(UTC),
                    status=status,
                    run_id="",
                    claimed_by=owner,
                    claimed_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        return False
    return True


def record_run(store: Store, schedule_id: str, slot: datetime, run_id: str, status: str) -> None:
    with store.session() as s, s.begin():
        row = s.get(JobScheduleFire, (schedule_id, slot.astimezone(UTC)))
        if row is not None:
            row.run_id, row.status = run_id, status


def fires(store: Store, schedule_id: str | None = None) -> list[JobScheduleFire]:
    with store.session() as s:
        q = select(JobScheduleFire).order_by(JobScheduleFire.slot)
        if schedule_id is not None:
            q = q.where(JobScheduleFire.schedule_id == schedule_id)
        return list(s.scalars(q))


def claim_due(store: Store, now: datetime, owner: str) -> list[tuple[JobSchedule, datetime]]:
    """The slots this runner has claimed to run now (late ones under ``skip`` are stored as ``missed``)."""
    with store.session() as s:
        schedules = list(s.scalars(select(JobSchedule).where(JobSchedule.enabled)))
        last = dict(
            s.execute(
                select(JobScheduleFire.schedule_id, func.max(JobScheduleFire.slot)).group_by(
                    JobScheduleFire.schedule_id
                )
            ).all()
        )
    claimed = []
    for row in schedules:
        slots = due_slots(row.cron, row.tz, last.get(row.id) or row.created_at, now)
        if not slots:
            continue
        newest = slots[-1]
        late = (now - newest).total_seconds() > row.grace_s
        if late and row.misfire == "skip":
            claim(store, row.id, newest, "missed", owner)
        elif claim(store, row.id, newest, "started", owner):
            claimed.append((row, newest))
    return claimed


Fire = Callable[[JobSchedule, datetime], Awaitable[tuple[str, str]]]  # runs the pipeline: (run id, status)


async def scheduler_loop(
    store: Store, fire: Fire, *, owner: str, stop: asyncio.Event, tick_s: float = 1.0
) -> None:
    """Every ``tick_s``: claim the due slots and run each (several at once); on ``stop``, let them end."""
    running: set[asyncio.Task[None]] = set()

    async def one(row: JobSchedule, slot: datetime) -> None:
        try:
            run_id, status = await fire(row, slot)
        except (
            LlmdockError
        ) as exc:  # the pipeline could not start (its file, the store): recorded, loop goes on
            log.warning("schedule %s, slot %s: %s", row.id[:12], slot.isoformat(), exc.one_line())
            run_id, status = "", "error"
        await asyncio.to_thread(record_run, store, row.id, slot, run_id, status)

    while not stop.is_set():
        for row, slot in await asyncio.to_thread(claim_due, store, datetime.now(UTC), owner):
            task = asyncio.create_task(one(row, slot))
            running.add(task)
            task.add_done_callback(running.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), tick_s)
    if running:
        await asyncio.gather(*running, return_exceptions=True)
