"""What watches a route's deployments in the background: health checks, and breakers shared between workers.

A breaker that trips in one worker is announced in Redis (a key that expires with the cooldown); every
worker polls those keys and opens its own breaker for the rest of the cooldown, so a dead deployment is
avoided by all workers within ``BREAKER_SYNC_S``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import TYPE_CHECKING, Any

from llmdock.errors import LlmdockError
from llmdock.routing.deployment import Deployment

if TYPE_CHECKING:
    from llmdock.shared_state import SharedState

BREAKER_KEY = "llmdock:breaker:"
BREAKER_SYNC_S = 0.5


async def _none() -> None:
    return None


async def _no_values() -> list[Any]:
    return []


class RouteWatch:
    """The background tasks of one route; started with the route, cancelled when it closes."""

    def __init__(self, deployments: list[Deployment], shared: SharedState | None) -> None:
        self.deployments = deployments
        self.shared = shared
        self._health_task: asyncio.Task[None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._announcing: set[asyncio.Task[None]] = set()
        if shared is not None:
            for dep in deployments:
                dep.breaker.on_trip = functools.partial(self._announce_trip, dep)

    def start(self, health_interval_s: float) -> None:
        if health_interval_s > 0 and self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop(health_interval_s))
        if self.shared is not None and self._sync_task is None:
            self._sync_task = asyncio.create_task(self._breaker_sync_loop(BREAKER_SYNC_S))

    def stop(self) -> None:
        for task in (self._health_task, self._sync_task):
            if task is not None:
                task.cancel()

    def _announce_trip(self, dep: Deployment) -> None:
        shared = self.shared
        if shared is None:
            return
        key, ttl_ms = BREAKER_KEY + dep.id, int(dep.breaker.cooldown_s * 1000)

        async def announce() -> None:
            await shared.run(lambda: shared.client.set(key, repr(time.time()), px=ttl_ms), _none)

        try:
            task = asyncio.get_running_loop().create_task(announce())
        except RuntimeError:  # no loop (a breaker tripped outside serving): nothing to tell
            return
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _breaker_sync_loop(self, interval: float) -> None:
        """Adopt breakers other workers opened, so a dead deployment is avoided by all within ``interval``."""
        shared = self.shared
        assert shared is not None
        keys = [BREAKER_KEY + d.id for d in self.deployments]
        while True:
            await asyncio.sleep(interval)
            values = await shared.run(lambda: shared.client.mget(keys), _no_values)
            now = time.time()
            for dep, value in zip(self.deployments, values or [], strict=False):
                if value is not None:
                    dep.breaker.adopt_open(max(0.0, now - float(value)))

    async def _health_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for dep in self.deployments:
                try:
                    await asyncio.wait_for(dep.backend.health(), timeout=max(1.0, interval))
                except (LlmdockError, TimeoutError) as exc:
                    dep.breaker.record_failure(f"health check: {exc}")
                else:
                    if dep.breaker.state == "half_open":
                        dep.breaker.record_success()
