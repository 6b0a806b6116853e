"""The pipeline step ``monitor.drift_days``: keep the drift points of the last closed UTC days of each model's
traffic (``monitor.drift_days``), which the dashboard's monitoring page charts. Scheduled once a day, e.g.::

    # drift-days.yaml
    name: drift-days
    schedule: {cron: "20 0 * * *"}
    steps:
      - id: drift
        uses: monitor.drift_days
        with: {days: 2}

    llmdock jobs schedule drift-days.yaml    # then llmdock jobs scheduler, or a gateway with job_scheduler
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from llmdock.jobs.steps import StepContext, StepParams


class DriftDaysParams(StepParams):
    days: int = Field(
        default=2, ge=1, le=90, description="the closed UTC days to keep, counting back from yesterday"
    )
    models: list[str] = Field(
        default_factory=list, description="the models (default: every model with traces)"
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="a statistic drifted below this adjusted p-value"
    )
    again: bool = Field(default=False, description="compute days kept already again")


class DriftDaysStep:
    """Outputs how many model-days were kept, how many statistics, and how many of those drifted."""

    name: ClassVar[str] = "monitor.drift_days"
    Params: ClassVar[type[StepParams]] = DriftDaysParams
    outputs: ClassVar[tuple[str, ...]] = ("days", "points", "drifted")

    async def run(self, params: DriftDaysParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.monitor.drift_days import KeptDay, keep_drift_days

        def heard(d: KeptDay) -> None:
            what = f"{d.points} statistics, {d.drifted} drifted" if d.points else "too few traces, none kept"
            ctx.log(f"{d.model} {d.day}: {d.traces} traces, {what}")

        kept = await keep_drift_days(
            ctx.services.store,
            params.days,
            params.models or None,
            alpha=params.alpha,
            again=params.again,
            done=heard,
        )
        return {
            "days": sum(1 for d in kept if d.points),
            "points": sum(d.points for d in kept),
            "drifted": sum(d.drifted for d in kept),
        }
