"""Spend budgets of keys and teams, per day or month (UTC); they reset when the period changes.

What a key or team spent in the current period is read once from the traces (``traces.cost``), then kept
as a running total: in process, and in Redis when configured, so every gateway worker sees one total.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from sqlalchemy import func, select

from llmdock.errors import BudgetExceeded
from llmdock.shared_state import SharedState
from llmdock.store.engine import Store
from llmdock.store.models import Trace

log = logging.getLogger("llmdock.auth")
PERIOD_WORD = {"day": "daily", "month": "monthly"}


def period_bounds(period: str, now: datetime | None = None) -> tuple[str, datetime, datetime]:
    """(period id, start, end) of the budget period containing ``now`` (UTC)."""
    now = now or datetime.now(UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = datetime.fromtimestamp(start.timestamp() + 86400, UTC)
        return start.strftime("%Y-%m-%d"), start, end
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.strftime("%Y-%m"), start, end


async def _nothing() -> None:
    return None


class Spend:
    """Running spend totals, one per scope (``key:<id>``, ``team:<id>``) and period."""

    def __init__(self, store: Store | None, shared: SharedState | None) -> None:
        self.store = store
        self.shared = shared
        self.totals: dict[str, float] = {}  # "<scope>:<period id>" -> spent (this process's view)

    async def check(self, scope: str, budget: float, period: str) -> None:
        """Raise :class:`BudgetExceeded` (``Retry-After`` = the period's end) if the budget is used up."""
        spent = await self.spent(scope, period)
        if spent >= budget:
            _, _, end = period_bounds(period)
            wait = max(1, int(end.timestamp() - time.time()))
            who = "key" if scope.startswith("key:") else "team"
            raise BudgetExceeded(
                f"the {who}'s {PERIOD_WORD[period]} budget of {budget:.4f} is used up "
                f"({spent:.4f} spent); it resets at {end:%Y-%m-%d %H:%M} UTC",
                headers={"Retry-After": str(wait)},
            )

    async def spent(self, scope: str, period: str) -> float:
        period_id, start, end = period_bounds(period)
        name = f"{scope}:{period_id}"
        if name not in self.totals:
            self.totals[name] = await asyncio.to_thread(self._spent_in_store, scope, start)
            if self.shared is not None:
                seed = self.totals[name]
                ttl = int(end.timestamp() - time.time()) + 3600

                async def seed_redis() -> None:
                    await self.shared.client.set(f"llmdock:spend:{name}", seed, nx=True, ex=ttl)  # type: ignore[union-attr]

                await self.shared.run(seed_redis, _nothing)
        if self.shared is None:
            return self.totals[name]

        async def from_redis() -> float:
            value = await self.shared.client.get(f"llmdock:spend:{name}")  # type: ignore[union-attr]
            return float(value or 0.0)

        async def local() -> float:
            return self.totals[name]

        return await self.shared.run(from_redis, local)

    def _spent_in_store(self, scope: str, start: datetime) -> float:
        if self.store is None:
            return 0.0
        kind, ident = scope.split(":", 1)
        column = Trace.api_key_id if kind == "key" else Trace.team_id
        try:
            with self.store.session() as s:
                total = s.scalar(
                    select(func.coalesce(func.sum(Trace.cost), 0.0)).where(
                        column == ident, Trace.created_at >= start
                    )
                )
            return float(total or 0.0)
        except Exception as exc:
            log.warning("cannot read spend for %s from the store: %s", scope, exc)
            return 0.0

    async def add(self, scope: str, period: str, cost: float) -> None:
        period_id, _, end = period_bounds(period)
        name = f"{scope}:{period_id}"
        self.totals[name] = self.totals.get(name, 0.0) + cost
        if self.shared is None:
            return
        ttl = int(end.timestamp() - time.time()) + 3600

        async def incr() -> None:
            async with self.shared.client.pipeline(transaction=True) as pipe:  # type: ignore[union-attr]
                pipe.incrbyfloat(f"llmdock:spend:{name}", cost)
                pipe.expire(f"llmdock:spend:{name}", ttl)
                await pipe.execute()

        await self.shared.run(incr, _nothing)
