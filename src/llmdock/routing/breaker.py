"""A per-deployment circuit breaker: closed → open after N failures in a window → half-open probes → closed.

Time comes from a clock function so tests drive it without sleeping.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures: int = 5,
        window_s: float = 30.0,
        cooldown_s: float = 10.0,
        probes: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window_s = window_s
        self.cooldown_s = cooldown_s
        self.probes = probes
        self.clock = clock
        self._recent: collections.deque[float] = collections.deque()
        self._state: State = "closed"
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self.last_error = ""
        self.on_trip: Callable[[], None] | None = None  # e.g. tell the other workers (Redis)

    @property
    def state(self) -> State:
        if self._state == "open" and self.clock() - self._opened_at >= self.cooldown_s:
            self._state = "half_open"
            self._probes_in_flight = 0
            self._probe_successes = 0
        return self._state

    def allows(self) -> bool:
        """Whether a request may go to this deployment now (in half-open, only up to ``probes`` at once)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open":
            return self._probes_in_flight < self.probes
        return False

    def on_start(self) -> None:
        if self.state == "half_open":
            self._probes_in_flight += 1

    def record_success(self) -> None:
        if self._state == "half_open":
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._probe_successes += 1
            if self._probe_successes >= self.probes:
                self._state = "closed"
                self._recent.clear()
                self.last_error = ""

    def abandon(self) -> None:
        """A request ended with no verdict on the deployment (its client went away, or it was refused for what
        it asked): in half-open, its probe slot is free again, or no probe could ever close the breaker."""
        if self._state == "half_open":
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def record_failure(self, error: str = "") -> None:
        now = self.clock()
        self.last_error = error
        if self.state == "half_open":
            self._trip(now)
            return
        self._recent.append(now)
        while self._recent and now - self._recent[0] > self.window_s:
            self._recent.popleft()
        if len(self._recent) >= self.failures:
            self._trip(now)

    def _trip(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._recent.clear()
        self._probes_in_flight = 0
        if self.on_trip is not None:
            self.on_trip()

    def opened_for(self) -> float | None:
        """Seconds since the breaker opened, or None if it is not open."""
        return self.clock() - self._opened_at if self.state == "open" else None

    def adopt_open(self, opened_s_ago: float) -> None:
        """Open because another worker's breaker for the same deployment did (without re-announcing it)."""
        if self._state == "closed" and opened_s_ago < self.cooldown_s:
            self._state = "open"
            self._opened_at = self.clock() - opened_s_ago
            self._recent.clear()

    def snapshot(self) -> dict[str, object]:
        state = self.state
        out: dict[str, object] = {"state": state, "recent_failures": len(self._recent)}
        if state == "open":
            out["retry_in_s"] = round(max(0.0, self.cooldown_s - (self.clock() - self._opened_at)), 2)
        if self.last_error:
            out["last_error"] = self.last_error
        return out
