"""State shared by gateway workers through Redis: the exact cache and per-deployment rpm/tpm counters.

Redis must answer when llmdock starts (else a config error, exit 2). If it goes away later, each worker
falls back to its in-process state, logs it once, shows it on ``/ready``, and tries Redis again after a
few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from llmdock.config import Settings
from llmdock.errors import ConfigError

log = logging.getLogger("llmdock.shared")
T = TypeVar("T")
RETRY_AFTER_S = 5.0


class SharedState:
    def __init__(self, url: str, client: Any) -> None:
        self.url = url
        self.client = client
        self.degraded_since: float | None = None
        self.last_error = ""

    @classmethod
    def connect(cls, settings: Settings) -> SharedState | None:
        if not settings.redis_url:
            return None
        import redis
        import redis.asyncio

        try:
            probe = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
            probe.ping()
            probe.close()
        except (redis.RedisError, ValueError) as exc:
            raise ConfigError(f"Redis unreachable: {exc}", where=settings.where(("redis_url",))) from None
        client = redis.asyncio.Redis.from_url(settings.redis_url, socket_connect_timeout=1, socket_timeout=1)
        return cls(settings.redis_url, client)

    def usable(self) -> bool:
        return self.degraded_since is None or time.monotonic() - self.degraded_since > RETRY_AFTER_S

    async def run(self, op: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis operation, or the in-process fallback while Redis is unreachable."""
        import redis

        if not self.usable():
            return await fallback()
        try:
            result = await op()
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            if self.degraded_since is None:
                log.warning("Redis unreachable, using in-process state until it is back: %s", exc)
            self.degraded_since = time.monotonic()
            self.last_error = str(exc)
            return await fallback()
        if self.degraded_since is not None:
            log.warning("Redis reachable again; shared state restored")
            self.degraded_since = None
            self.last_error = ""
        return result

    def status(self) -> dict[str, Any]:
        if self.degraded_since is None:
            return {"ok": True}
        return {"ok": False, "degraded_to": "in-process state", "error": self.last_error}

    async def close(self) -> None:
        await self.client.aclose()
