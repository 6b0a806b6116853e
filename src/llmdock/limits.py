"""Requests- and tokens-per-minute limits: per deployment (routing) and per key or team (auth).

:class:`MinuteLimiter` counts in process over a sliding minute; :class:`SharedMinuteLimiter` counts in Redis
over fixed minutes, so every gateway worker sees the same totals, and falls back to the in-process one
while Redis is unreachable. A module of its own, below both of its users: it needs only ``shared_state``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmdock.shared_state import SharedState


class MinuteLimiter:
    def __init__(self, rpm: int | None, tpm: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.clock = clock
        self._requests: collections.deque[float] = collections.deque()
        self._tokens: collections.deque[tuple[float, int]] = collections.deque()
        self._token_sum = 0

    def seed(self, ages: list[tuple[float, int]]) -> None:
        """Count requests that happened before this limiter existed: (seconds ago, tokens) each, any order.

        A restarted gateway seeds its limiters from the traces of the last minute, so that a crash and
        restart does not hand a key a fresh minute.
        """
        now = self.clock()
        for age, tokens in sorted(ages, reverse=True):  # oldest first
            if 0 <= age < 60:
                self._requests.append(now - age)
                if tokens > 0:
                    self._tokens.append((now - age, tokens))
                    self._token_sum += tokens

    def _expire(self, now: float) -> None:
        while self._requests and now - self._requests[0] >= 60:
            self._requests.popleft()
        while self._tokens and now - self._tokens[0][0] >= 60:
            self._token_sum -= self._tokens.popleft()[1]

    async def try_acquire(self, expected_tokens: int = 0) -> bool:
        """Count one request if it fits both limits; False (and nothing counted) if not."""
        if self.rpm is None and self.tpm is None:
            return True
        now = self.clock()
        self._expire(now)
        if self.rpm is not None and len(self._requests) >= self.rpm:
            return False
        if self.tpm is not None and self._token_sum + expected_tokens > self.tpm:
            return False
        self._requests.append(now)
        return True

    async def add_tokens(self, tokens: int) -> None:
        if self.tpm is None or tokens <= 0:
            return
        self._tokens.append((self.clock(), tokens))
        self._token_sum += tokens

    def retry_after(self) -> float:
        """Seconds until the oldest counted request or tokens leave the window."""
        now = self.clock()
        oldest = [
            t
            for t in (
                self._requests[0] if self._requests else None,
                self._tokens[0][0] if self._tokens else None,
            )
            if t
        ]
        return max(0.0, 60 - (now - min(oldest))) if oldest else 0.0

    def snapshot(self) -> dict[str, object]:
        self._expire(self.clock())
        return {
            "rpm": self.rpm,
            "tpm": self.tpm,
            "requests_last_minute": len(self._requests),
            "tokens_last_minute": self._token_sum,
        }


class SharedMinuteLimiter:
    def __init__(self, shared: SharedState, key: str, local: MinuteLimiter) -> None:
        self.shared = shared
        self.key = key
        self.local = local
        self.rpm = local.rpm
        self.tpm = local.tpm
        self._seen = (0, 0)  # (requests, tokens) of this minute as Redis last answered

    def _keys(self) -> tuple[str, str]:
        minute = int(time.time() // 60)
        return f"llmdock:rl:{self.key}:{minute}:r", f"llmdock:rl:{self.key}:{minute}:t"

    async def _redis_acquire(self, expected_tokens: int) -> bool:
        rkey, tkey = self._keys()
        async with self.shared.client.pipeline(transaction=True) as pipe:
            pipe.incr(rkey)
            pipe.expire(rkey, 120)
            pipe.get(tkey)
            count, _, tokens = await pipe.execute()
        self._seen = (int(count), int(tokens or 0))
        over_rpm = self.rpm is not None and int(count) > self.rpm
        over_tpm = self.tpm is not None and int(tokens or 0) + expected_tokens > self.tpm
        if over_rpm or over_tpm:
            await self.shared.client.decr(rkey)
            return False
        return True

    async def try_acquire(self, expected_tokens: int = 0) -> bool:
        if self.rpm is None and self.tpm is None:
            return True
        return await self.shared.run(
            lambda: self._redis_acquire(expected_tokens), lambda: self.local.try_acquire(expected_tokens)
        )

    async def _redis_add(self, tokens: int) -> None:
        _, tkey = self._keys()
        async with self.shared.client.pipeline(transaction=True) as pipe:
            pipe.incrby(tkey, tokens)
            pipe.expire(tkey, 120)
            await pipe.execute()

    async def add_tokens(self, tokens: int) -> None:
        if self.tpm is None or tokens <= 0:
            return
        await self.shared.run(lambda: self._redis_add(tokens), lambda: self.local.add_tokens(tokens))

    def retry_after(self) -> float:
        return 60 - time.time() % 60 if self.shared.usable() else self.local.retry_after()

    def snapshot(self) -> dict[str, object]:
        if not self.shared.usable():
            return {**self.local.snapshot(), "shared": "degraded to in-process"}
        return {
            "rpm": self.rpm,
            "tpm": self.tpm,
            "requests_last_minute": self._seen[0],
            "tokens_last_minute": self._seen[1],
            "shared": "redis",
        }
