"""Schedules: slots in the schedule's time zone, one claim per slot, and the misfire policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llmdock.jobs.schedule_spec import ScheduleSpec, due_slots, next_slot
from llmdock.jobs.schedules import add_schedule, claim, claim_due, fires
from llmdock.store import Store
from llmdock.store.jobs_rows import JobSchedule


@pytest.mark.parametrize(
    ("now", "utc_hour"),
    [
        (datetime(2026, 1, 10, 12, tzinfo=UTC), 2),  # CET, UTC+1
        (datetime(2026, 7, 10, 12, tzinfo=UTC), 1),  # CEST, UTC+2
    ],
)
def test_a_slot_is_read_in_the_schedules_time_zone_summer_and_winter(now: datetime, utc_hour: int) -> None:
    slot = next_slot("0 3 * * *", "Europe/Berlin", now)
    assert (slot.hour, slot.astimezone(UTC).hour) == (3, utc_hour)


def test_six_fields_are_seconds_last() -> None:
    now = datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)
    slots = due_slots("* * * * * */2", "UTC", now - timedelta(seconds=5), now)
    assert [s.second for s in slots] == [6, 8, 10]


def store_with(tmp_path: Path, spec: ScheduleSpec, age: timedelta) -> tuple[Store, JobSchedule]:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    row = add_schedule(store, tmp_path / "p.yaml", {}, spec, "test")
    with store.session() as s, s.begin():
        s.get(JobSchedule, row.id).created_at = datetime.now(UTC) - age  # type: ignore[union-attr]
    return store, row


def test_a_slot_is_claimed_once_however_many_runners_try(tmp_path: Path) -> None:
    store, row = store_with(tmp_path, ScheduleSpec(cron="* * * * *"), timedelta(minutes=1))
    slot = datetime(2026, 1, 1, 3, tzinfo=UTC)
    assert claim(store, row.id, slot, "started", "a")
    assert not claim(store, row.id, slot, "started", "b")
    now = datetime.now(UTC)
    first, second = claim_due(store, now, "a"), claim_due(store, now, "b")
    assert len(first) == 1
    assert second == []


@pytest.mark.parametrize(("misfire", "runs", "status"), [("skip", 0, "missed"), ("run_once", 1, "started")])
def test_a_slot_found_late_follows_the_misfire_policy(
    tmp_path: Path, misfire: str, runs: int, status: str
) -> None:
    spec = ScheduleSpec(cron="0 * * * *", misfire=misfire, grace_s=60)  # type: ignore[arg-type]
    store, row = store_with(tmp_path, spec, timedelta(hours=5))  # the runner was down for hours
    now = datetime.now(UTC).replace(minute=30)
    claimed = claim_due(store, now, "a")
    assert len(claimed) == runs
    [fire] = fires(store, row.id)  # only the newest missed slot: older ones are not run either way
    assert (fire.status, fire.slot) == (status, now.replace(second=0, microsecond=0, minute=0))
    assert claim_due(store, now, "a") == []  # handled: not again


def test_a_slot_within_its_grace_time_runs(tmp_path: Path) -> None:
    store, row = store_with(tmp_path, ScheduleSpec(cron="0 * * * *", grace_s=120), timedelta(hours=1))
    now = datetime.now(UTC).replace(minute=1)
    [(claimed, slot)] = claim_due(store, now, "a")
    assert claimed.id == row.id
    assert slot == now.replace(minute=0, second=0, microsecond=0)
