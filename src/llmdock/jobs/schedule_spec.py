"""When a schedule fires: a cron expression (croniter; five fields, or six with seconds last) read in an IANA
time zone (zoneinfo), so ``0 3 * * *`` in ``Europe/Berlin`` is 03:00 Berlin time in winter and in summer.

The misfire policy says what a runner does with a slot it finds in the past by more than ``grace_s`` (it was
down, or the previous run took longer than the interval): ``skip`` records it as missed and waits for the
next one; ``run_once`` runs the newest missed slot once (older ones are recorded as missed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

Misfire = Literal["skip", "run_once"]


def check_cron(cron: str) -> str:
    cron = " ".join(cron.split())
    if len(cron.split()) not in (5, 6) or not croniter.is_valid(cron):
        raise ValueError(
            f"{cron!r} is not a cron expression: minute hour day month weekday (and seconds, last, if six)"
        )
    return cron


def check_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{tz!r} is not a time zone (an IANA name such as Europe/Berlin or UTC)") from None
    return tz


class ScheduleSpec(BaseModel):
    """A pipeline's ``schedule:`` block, or ``llmdock jobs schedule``'s flags."""

    model_config = ConfigDict(extra="forbid")

    cron: str
    tz: str = "UTC"
    misfire: Misfire = "skip"
    grace_s: float = Field(default=60.0, gt=0)

    _cron = field_validator("cron")(classmethod(lambda cls, v: check_cron(v)))
    _tz = field_validator("tz")(classmethod(lambda cls, v: check_tz(v)))


def due_slots(cron: str, tz: str, after: datetime, now: datetime) -> list[datetime]:
    """The slots in (``after``, ``now``], oldest first, looked for no further back than a day before ``now``
    (older ones are long missed whatever the policy)."""
    out: list[datetime] = []
    it = croniter(cron, max(after, now - timedelta(days=1)).astimezone(ZoneInfo(tz)))
    while True:
        slot: datetime = it.get_next(datetime)
        if slot > now:
            return out
        out.append(slot)


def next_slot(cron: str, tz: str, after: datetime) -> datetime:
    slot: datetime = croniter(cron, after.astimezone(ZoneInfo(tz))).get_next(datetime)
    return slot
