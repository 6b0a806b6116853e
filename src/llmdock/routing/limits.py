"""Requests- and tokens-per-minute limits per deployment, in process (sliding one-minute window).

The interface is small (``try_acquire``, ``add_tokens``, ``retry_after``) so a Redis-backed limiter shared
across gateway workers can stand in for it.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable


class MinuteLimiter:
    def __init__(self, rpm: int | None, tpm: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.clock = clock
        self._requests: collections.deque[float] = collections.deque()
        self._tokens: collections.deque[tuple[float, int]] = collections.deque()
        self._token_sum = 0

    def _expire(self, now: float) -> None:
        while self._requests and now - self._requests[0] >= 60:
            self._requests.popleft()
        while self._tokens and now - self._tokens[0][0] >= 60:
            self._token_sum -= self._tokens.popleft()[1]

    def try_acquire(self, expected_tokens: int = 0) -> bool:
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

    def add_tokens(self, tokens: int) -> None:
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
