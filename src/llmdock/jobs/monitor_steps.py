"""Pipeline steps over monitoring: ``canary.run`` (a provider canary's pinned suite asked now, compared with its
baseline, its alert sent). ``llmdock canary add`` schedules the pipeline ``templates/canary.yaml`` running it,
so a canary fires once per slot under ``llmdock jobs scheduler`` or a gateway with ``job_scheduler: true``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from llmdock.jobs.steps import StepContext, StepParams

CANARY_PIPELINE = Path(__file__).parent / "templates" / "canary.yaml"


class CanaryRunParams(StepParams):
    name: str = Field(min_length=1, description="the canary (llmdock canary list)")


class CanaryRunStep:
    """Runs a canary: outputs its status (``baseline``, ``same``, ``changed``), the evaluation run, the share of
    answers unchanged and what changed."""

    name: ClassVar[str] = "canary.run"
    Params: ClassVar[type[StepParams]] = CanaryRunParams
    outputs: ClassVar[tuple[str, ...]] = ("status", "run_id", "unchanged", "findings")

    async def run(self, params: CanaryRunParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.monitor.canary import get_canary, run_canary
        from llmdock.monitor.canary_alert import send

        services = ctx.services
        canary = await asyncio.to_thread(get_canary, services.store, params.name)
        outcome = await run_canary(
            services.store, canary, services.metrics, services.serving(), by=services.actor.name
        )
        row = outcome.run
        for finding in row.findings:
            ctx.log(f"{finding['kind']}: {finding['message']}")
        ctx.log(f"canary {canary.name}: {row.status} (evaluation run {row.eval_run})")
        if outcome.notice is not None:
            sent = await send(services.store, canary, services.settings.alerts.channels, outcome.notice)
            ctx.log("alert: " + (", ".join(f"{k}: {v}" for k, v in sent.items()) or "no channel"))
        return {
            "status": row.status,
            "run_id": row.eval_run,
            "unchanged": row.unchanged if row.unchanged is not None else -1.0,
            "findings": len(row.findings),
        }
