"""Per model and team trace policies: how long traces are kept (``retention.rules``) and what share of them keep
their bodies and spans (``trace.sampling``). Checked against the configured models by llmdock.store.trace_policy.

A rule matches a trace when every list it gives holds the trace's value (an empty list matches anything); the
first matching rule decides, the section's default (``retention.traces_days``, ``trace.sample``) applies to
traces no rule matches.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class TraceMatch(BaseModel):
    """Which traces a rule applies to: every given list must hold the trace's value."""

    model_config = ConfigDict(extra="forbid")

    model: list[str] = Field(default_factory=list, description="model names as requested (configured models)")
    team: list[str] = Field(
        default_factory=list, description="team ids of the requesting key (llmdock teams)"
    )

    @field_validator("model", "team", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class RetentionRule(TraceMatch):
    traces_days: int | None = Field(
        ..., gt=0, description="delete the matching traces older than this; null = keep them"
    )


class SampleRule(TraceMatch):
    share: float = Field(
        ..., ge=0, le=1, description="share of the matching requests whose trace keeps its bodies and spans"
    )
