"""The monitoring sections: Prometheus metrics (``metrics``), alert rules on stored traces (``alerts``) and
sampled online evaluation of answered traffic (``online_eval``).

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
TRACE_METRICS = (
    "requests",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "cost",
    "tokens",
    "guard_block_rate",
)
ONLINE_EVAL = "online_eval:"  # an alert metric ``online_eval:NAME``: the mean of that online-evaluation score
SCORE_NAME = r"[a-z][a-z0-9_.-]{0,63}"  # what feedback accepts as a score's name


def _alert_metric(value: Any) -> Any:
    if (
        isinstance(value, str)
        and re.fullmatch(re.escape(ONLINE_EVAL) + SCORE_NAME, value)
        and len(value) > 32
    ):
        raise ValueError(
            f"{value!r}: an alert on an online-evaluation score takes a name of 20 characters at most"
        )
    if isinstance(value, str) and (
        value in TRACE_METRICS or re.fullmatch(re.escape(ONLINE_EVAL) + SCORE_NAME, value)
    ):
        return value
    raise ValueError(
        f"unknown metric {value!r}: one of {', '.join(TRACE_METRICS)}, or online_eval:NAME "
        "(an online-evaluation score)"
    )


AlertMetric = Annotated[str, BeforeValidator(_alert_metric)]


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


class OnlineMetric(BaseModel):
    """One metric an online-evaluation rule scores with: an evaluation check (``{type, value, threshold}``, as
    in a suite's ``assert``), whose ``name`` names its scores on the trace and its time series."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, description="a metric of the evaluation registry (llm-rubric, regex…)")
    name: str = Field(default="", description="the score's name (default: the type)")
    value: Any = Field(default=None, description="what the metric compares with: a rubric, a pattern…")
    threshold: float | None = None

    @property
    def label(self) -> str:
        return self.name or self.type

    @model_validator(mode="after")
    def _named(self) -> OnlineMetric:
        if not re.fullmatch(SCORE_NAME, self.label) or self.label in ("thumbs", "rating"):
            raise ValueError(
                f"{self.label!r} cannot name a score: give `name` (lowercase letters, digits, _ . -; "
                "not thumbs or rating)"
            )
        return self


class OnlineEvalRule(BaseModel):
    """Which answered traffic is scored (models, routes, prompts; empty: any), what share of it, and how."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    models: list[str] = Field(default_factory=list, description="empty: every model")
    routes: list[Literal["chat", "completion", "responses"]] = Field(
        default_factory=list, description="empty: every route that answers with text"
    )
    prompts: list[str] = Field(
        default_factory=list, description="prompt templates: NAME, NAME@LABEL or NAME/VERSION; empty: any"
    )
    sample: float = Field(default=0.05, gt=0, le=1, description="the share of matching traces scored")
    metrics: list[OnlineMetric] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> OnlineEvalRule:
        _once([m.label for m in self.metrics], "two metrics are named {!r}: give each a `name`")
        return self


class OnlineEvalSettings(BaseModel):
    """Sampled online evaluation (docs/monitoring.md#online-evaluation)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[OnlineEvalRule] = Field(default_factory=list)
    every: Duration = Field(default=5.0, description="how often the stored traces are read for new ones")
    settle: Duration = Field(
        default=10.0, description="traces are read this long after they were answered (ingest delay)"
    )
    batch: int = Field(default=200, gt=0, le=10_000, description="traces read per look")
    queue: int = Field(default=256, gt=0, description="claimed traces waiting to be scored, at most")
    concurrency: int = Field(default=1, gt=0, le=64, description="traces scored at once")
    max_lag: Duration = Field(
        default=3600.0, description="further behind than this, the evaluator skips ahead (counted as dropped)"
    )

    @model_validator(mode="after")
    def _unique(self) -> OnlineEvalSettings:
        _once([r.name for r in self.rules], "two online_eval rules are named {!r}")
        return self


def _once(names: list[str], message: str) -> None:
    for name in names:
        if names.count(name) > 1:
            raise ValueError(message.format(name))
