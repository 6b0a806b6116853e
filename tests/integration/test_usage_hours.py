"""``llmdock usage`` reads hourly totals kept in ``usage_hours``: on SQLite and on a throwaway PostgreSQL server,
its figures equal the traces' own, to the trace, at the window's edges (part hours), once the hours (and the
whole days, as day rows) are kept, and after retention and erasure delete traces."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from llmdock.privacy.gdpr import erase_subject
from llmdock.store import Store, TraceRecord, write_traces
from llmdock.store.audit import Actor
from llmdock.store.retention import purge
from llmdock.store.trace_policy import Match, RetentionPolicy
from llmdock.store.usage import UsageRow, usage_summary
from llmdock.store.usage_hours import KEPT, TOTALS, rollups, totals
from llmdock.store.usage_rows import UsageHour

ACTOR = Actor("test", "usage_hours")
NOW = datetime.now(UTC)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def traces(n: int) -> list[TraceRecord]:
    """``n`` traces over the last 50 hours, and one a minute either side of each window's start."""
    rng = random.Random(3)
    ages = [rng.uniform(0, 50 * 3600) for _ in range(n)]
    ages += [d * 86400 + s for d in (1, 2) for s in (-60, 60)]  # just inside and just outside 1 and 2 days
    return [
        TraceRecord(
            id=f"t{i:031d}",
            created_at=NOW - timedelta(seconds=age),
            operation="chat",
            model=rng.choice(["fake", "chatty"]),
            deployment=rng.choice(["", "eu"]),
            status="error" if i % 9 == 0 else "ok",
            cache="hit" if i % 5 == 0 else "",
            duration_ms=rng.uniform(1, 900),
            prompt_tokens=rng.randrange(100),
            completion_tokens=rng.randrange(50),
            cost=rng.randrange(1000) / 1e6,
            team_id=rng.choice(["t1", "t2"]),
            api_key_id=rng.choice(["k1", "k2", "k3"]),
            subject=rng.choice(["ann", "bob", "cy"]),
            input={},
            output="",
        )
        for i, age in enumerate(ages)
    ]


def expected(records: list[TraceRecord], days: float, since: datetime | None = None) -> list[UsageRow]:
    """What ``usage_summary`` must say, from the records themselves."""
    since = since or datetime.now(UTC) - timedelta(days=days)
    rows: dict[tuple[str, str, str], list[float]] = {}
    for r in records:
        if r.created_at >= since:
            t = rows.setdefault((r.created_at.strftime("%Y-%m-%d"), r.model, r.deployment), [0.0] * 6)
            hit = r.cache == "hit"
            for i, v in enumerate(
                (1, r.status == "error", hit, r.prompt_tokens, r.completion_tokens, r.cost)
            ):
                t[i] += v
    out = [UsageRow(*k, *(int(v) for v in t[:5]), round(t[5], 9)) for k, t in rows.items()]
    return sorted(out, key=lambda r: (r.day, r.model, r.deployment))


def by(records: list[TraceRecord], since: datetime, group: tuple[str, ...]) -> dict[tuple[str, ...], tuple]:
    """Requests and cost of the records created since ``since``, per value of the ``group`` columns."""
    field = {"day": "created_at", "key": "api_key_id", "team": "team_id", "model": "model"}
    out: dict[tuple[str, ...], list[float]] = {}
    for r in records:
        if r.created_at >= since:
            values = [getattr(r, field[g]) for g in group]
            key = tuple(v.strftime("%Y-%m-%d") if isinstance(v, datetime) else v for v in values)
            t = out.setdefault(key, [0, 0.0])
            t[0] += 1
            t[1] += r.cost
    return {k: (n, round(c, 9)) for k, (n, c) in out.items()}


def summary(store: Store, days: int) -> list[UsageRow]:
    rows = [UsageRow(**{**vars(r), "cost": round(r.cost, 9)}) for r in usage_summary(store, days=days)]
    return sorted(rows, key=lambda r: (r.day, r.model, r.deployment))


def test_usage_read_from_kept_hours_equals_the_traces_at_the_edges_and_after_deletions(store: Store) -> None:
    records = traces(600)
    write_traces(store, list(records))
    for days in (1, 2, 3):
        assert summary(store, days) == expected(records, days)
    with store.session() as s:
        kept = s.scalar(select(func.count()).select_from(UsageHour).where(UsageHour.team_id == KEPT))
    assert kept is not None
    assert kept >= 48  # the closed hours of the 3-day window are kept now
    with store.session() as s:
        days = s.scalar(
            select(func.count()).where(UsageHour.team_id == KEPT, UsageHour.hour == UsageHour.day)
        )
    assert (days or 0) >= 1  # its whole days, as days: read from their day rows from now on
    assert summary(store, 2) == expected(records, 2)  # read again from the kept rows
    # A window starting early in an hour takes the hour whole and subtracts the traces before its start.
    hour = (NOW - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    for start in (hour + timedelta(minutes=10), hour + timedelta(minutes=50)):
        found = totals(store, start, datetime.now(UTC), ("day", "model", "deployment"))
        at = [
            TOTALS.index(n)
            for n in ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens")
        ]
        rows = [UsageRow(*k, *(int(t[i]) for i in at), round(t[-1], 9)) for k, t in found.items()]
        assert sorted(rows, key=lambda r: (r.day, r.model, r.deployment)) == expected(records, 0, start)
        # The dashboard's: several groupings from one read of the kept hours, per key too.
        groups = [("day",), ("key",), ("team", "model")]
        found_each = rollups(store, start, datetime.now(UTC), groups)
        for group, found in zip(groups, found_each, strict=True):
            assert {k: (t[0], round(t[-1], 9)) for k, t in found.items()} == by(records, start, group)

    # Retention (chatty: 1 day) and erasure (ann) delete traces: the kept hours lose them too.
    deleted = purge(store, RetentionPolicy(None, ((Match(frozenset({"chatty"}), frozenset()), 1),)), ACTOR)
    erased = erase_subject(store, "ann", ACTOR, b"k" * 32)["traces_deleted"]
    left = [
        r
        for r in records
        if r.subject != "ann"
        and not (r.model == "chatty" and r.created_at < datetime.now(UTC) - timedelta(days=1))
    ]
    assert deleted > 50
    assert erased > 100
    assert len(left) == len(records) - deleted - erased
    for days in (1, 3):
        assert summary(store, days) == expected(left, days)

    # The kept rows are what aggregating the remaining traces afresh gives, per hour, team and model as well.
    group = ("hour", "team", "model")
    now = datetime.now(UTC)
    after = totals(store, now - timedelta(days=3), now, group)
    with store.session() as s, s.begin():
        s.execute(delete(UsageHour))
    fresh = totals(store, now - timedelta(days=3), now, group)
    counts = [i for i, n in enumerate(TOTALS) if n not in ("max_ms", "sum_ms", "cost")]
    assert {k: [v[i] for i in counts] for k, v in after.items()} == {
        k: [v[i] for i in counts] for k, v in fresh.items()
    }
