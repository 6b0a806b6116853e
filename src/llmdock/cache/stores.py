"""Where cached answers live: an in-process LRU with TTL by default, Redis when configured.

Both hold opaque bytes under string keys, so the exact cache and anything else (limits, breaker state)
can share the same Redis.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llmdock.shared_state import SharedState

log = logging.getLogger("llmdock.cache")


class CacheStore(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    def size(self) -> int: ...


class MemoryLRU:
    """A bounded LRU with per-entry expiry. Not shared between processes."""

    name = "memory"

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._data: collections.OrderedDict[str, tuple[float, bytes]] = collections.OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires < self.clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.put(key, value, ttl_s)

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        """Synchronous set: the answer is in the cache before the response leaves."""
        self._data[key] = (self.clock() + ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def size(self) -> int:
        return len(self._data)


class RedisStore:
    """Cached answers in Redis (``SET key value PX ttl``); the size bound is Redis's maxmemory/LRU policy."""

    name = "redis"

    def __init__(self, client: Any, prefix: str = "llmdock:cache:") -> None:
        self.client = client
        self.prefix = prefix

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.client.get(self.prefix + key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.client.set(self.prefix + key, value, px=int(ttl_s * 1000))

    def size(self) -> int:
        return -1  # unknown without a scan; Redis bounds it


def failover_store(shared: SharedState, fallback: CacheStore) -> CacheStore:
    """The cache store shared through Redis, falling back to ``fallback`` while Redis is away."""
    return _FailoverStore(shared, RedisStore(shared.client), fallback)


class _FailoverStore:
    """Redis while it answers, the in-process store while it does not (see SharedState.run)."""

    name = "redis"

    def __init__(self, shared: SharedState, primary: RedisStore, fallback: CacheStore) -> None:
        self.shared = shared
        self.primary = primary
        self.fallback = fallback

    async def get(self, key: str) -> bytes | None:
        return await self.shared.run(lambda: self.primary.get(key), lambda: self.fallback.get(key))

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.shared.run(
            lambda: self.primary.set(key, value, ttl_s), lambda: self.fallback.set(key, value, ttl_s)
        )

    def size(self) -> int:
        return self.fallback.size()
