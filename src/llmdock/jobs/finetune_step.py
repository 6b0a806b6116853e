"""The ``finetune`` pipeline step: ``llmdock finetune run CONFIG`` (LoRA training, merge, GGUF export,
quantizations, registration with lineage) as a step, whose ``model`` output is the registered reference a
later step uses (``${steps.tune.outputs.model}`` in ``eval.run``'s suite params, ``models.promote``…).

The training config is checked by the same loader as the CLI's: a bad field fails the step with its
``file:line: field: message``. A retried or resumed step continues the training run from its last complete
checkpoint (``resume``, on by default) rather than starting over."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import Field

from llmdock.errors import InvalidRequest
from llmdock.jobs.steps import StepContext, StepParams


class FinetuneParams(StepParams):
    config: str = Field(min_length=1, description="the finetune config (YAML), as llmdock finetune run")
    resume: bool = Field(default=True, description="continue the run's last checkpoint (a retried step)")


class FinetuneStep:
    """``llmdock finetune run CONFIG`` as a step: outputs the registered model (first quantization) and,
    with ``export.lora_adapter``, the GGUF LoRA adapter (``lora``: "" without)."""

    name: ClassVar[str] = "finetune"
    Params: ClassVar[type[StepParams]] = FinetuneParams
    outputs: ClassVar[tuple[str, ...]] = ("model", "version", "versions", "lora", "run", "steps", "loss")

    async def run(self, params: FinetuneParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.finetune.run import run_finetune

        path = ctx.path(params.config)
        if not path.is_file():
            raise InvalidRequest(f"no finetune config {path}", param="config")
        services = ctx.services
        ctx.log(f"finetune {path}")
        outcome = await asyncio.to_thread(
            run_finetune, path, services.settings, services.actor, resume=params.resume
        )
        versions = [f"models:/{v.name}/{v.version}" for v in outcome.versions]
        lora = [
            f"models:/{v.name}/{v.version}"
            for v in outcome.versions
            if "adapter_of" in v.lineage and v.format == "gguf"
        ]
        losses = outcome.training.losses
        ctx.log(f"run {outcome.run_id}: {outcome.training.steps} steps, registered {', '.join(versions)}")
        return {
            "model": versions[0],
            "version": outcome.versions[0].version,
            "versions": versions,
            "lora": lora[0] if lora else "",  # the GGUF LoRA (export.lora_adapter), for lora_path on the base
            "run": outcome.run_id,
            "steps": outcome.training.steps,
            "loss": losses[-1][1] if losses else None,
        }
