"""The monitoring sections: Prometheus metrics (``metrics``) and alert rules on stored traces (``alerts``).

A bad rule (an unknown metric, a malformed schedule or window, an unknown channel) stops llmdock at start with
``file:line: alerts.rules.N.field: message``, as every setting does."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


class MetricsSettings(BaseModel):
    """``GET /metrics`` (docs/monitoring.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="serve GET /metrics and count requests for it")
    flush_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="how often a worker publishes what it counted and samples breakers, in-flight and backlog",
    )


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``, ``5m``, ``1h``, ``7d`` (or a bare number of seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        m = _DURATION.fullmatch(str(value))
        if m is None:
            raise ValueError(
                f"malformed duration {value!r}: write a number and s, m, h or d (30s, 5m, 1h, 7d)"
            )
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, not {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
AlertMetric = Literal[
    "requests",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "cost",
    "tokens",
    "guard_block_rate",
]


class AlertChannel(BaseModel):
    """Where notifications go: a webhook (JSON POST), a Slack-compatible webhook, or e-mail over SMTP."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook", "slack", "email"]
    url: str = Field(default="", description="webhook and slack: where to POST")
    to: list[str] = Field(default_factory=list, description="email: recipients")
    sender: str = Field(default="llmdock@localhost", description="email: the From address")
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, gt=0, le=65535)
    starttls: bool = False
    username: str = ""
    password_env: str = Field(default="", description="email: the variable holding the SMTP password")
    timeout_s: float = Field(default=5.0, gt=0)
    retries: int = Field(default=4, ge=0, description="attempts after the first, with exponential backoff")
    backoff_s: float = Field(default=1.0, gt=0, description="wait before the first retry; doubles each time")

    @model_validator(mode="after")
    def _complete(self) -> AlertChannel:
        if self.type in ("webhook", "slack") and not self.url:
            raise ValueError(f"a {self.type} channel needs a url")
        if self.type == "email" and not self.to:
            raise ValueError("an email channel needs recipients (to)")
        return self


class AlertRule(BaseModel):
    """A condition on a metric computed from the stored traces, per model, evaluated on a schedule."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    metric: AlertMetric
    models: list[str] = Field(default_factory=list, description="empty: every model with traffic")
    window: Duration = Field(default=300.0, description="the traces the metric is computed over")
    every: Duration = Field(default=60.0, description="the schedule: how often the rule is evaluated")
    condition: Literal["threshold", "change", "anomaly"] = "threshold"
    above: float | None = None
    below: float | None = None
    baseline: Duration = Field(default=86400.0, description="anomaly: the past the window is compared with")
    sigmas: float = Field(default=3.0, gt=0, description="anomaly: standard deviations from the baseline")
    min_requests: int = Field(default=1, ge=0, description="no verdict on fewer requests in the window")
    channels: list[str] = Field(default_factory=list)
    silence: Duration = Field(default=3600.0, description="a firing alert is not sent again within this")

    @model_validator(mode="after")
    def _bounds(self) -> AlertRule:
        if self.condition != "anomaly" and self.above is None and self.below is None:
            raise ValueError(f"a {self.condition} rule needs above or below")
        if self.condition == "anomaly" and self.baseline < 5 * self.window:
            raise ValueError("an anomaly rule's baseline must hold at least 5 windows")
        return self


class AlertSettings(BaseModel):
    """Alert rules on the stored traces (docs/monitoring.md#alerts)."""

    model_config = ConfigDict(extra="forbid")

    channels: dict[str, AlertChannel] = Field(default_factory=dict)
    rules: list[AlertRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> AlertSettings:
        names = [r.name for r in self.rules]
        for rule in self.rules:
            if names.count(rule.name) > 1:
                raise ValueError(f"two rules are named {rule.name!r}")
            unknown = [c for c in rule.channels if c not in self.channels]
            if unknown:
                raise ValueError(
                    f"rule {rule.name!r} names the unknown channel {unknown[0]!r} "
                    f"(configured: {', '.join(self.channels) or 'none'})"
                )
        return self
