"""One deployment of a model as the router sees it: its backend, config, breaker, limiter and statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmdock.backends.base import Backend
from llmdock.config import DeploymentConfig
from llmdock.limits import MinuteLimiter, SharedMinuteLimiter
from llmdock.routing.breaker import CircuitBreaker


@dataclass(eq=False)
class Deployment:
    id: str
    backend: Backend
    config: DeploymentConfig
    breaker: CircuitBreaker
    limiter: MinuteLimiter | SharedMinuteLimiter
    latency_ms: float | None = None
    requests: int = 0
    failures: int = 0

    def observe_latency(self, ms: float) -> None:
        self.latency_ms = ms if self.latency_ms is None else 0.8 * self.latency_ms + 0.2 * ms

    @property
    def in_flight(self) -> int:
        """Requests running or queued here: the backend's own admission count, never kept twice."""
        return self.backend.in_flight

    def has_room(self) -> bool:
        return self.config.max_in_flight is None or self.in_flight < self.config.max_in_flight

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "backend": self.backend.kind,
            "weight": self.config.weight,
            "priority": self.config.priority,
            "in_flight": self.in_flight,
            "latency_ms_ewma": None if self.latency_ms is None else round(self.latency_ms, 3),
            "requests": self.requests,
            "failures": self.failures,
            "breaker": self.breaker.snapshot(),
            "limits": self.limiter.snapshot(),
            "price": self.config.price.model_dump(),
        }
