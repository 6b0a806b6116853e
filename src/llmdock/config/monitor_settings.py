"""The monitoring sections: Prometheus metrics (``metrics``) and alert rules on stored traces (``alerts``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MetricsSettings(BaseModel):
    """``GET /metrics`` (docs/monitoring.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve GET /metrics and count requests for it")
    flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="how often a worker publishes what it counted and samples breakers, in-flight and backlog",
    )
