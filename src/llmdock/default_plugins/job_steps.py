"""The built-in pipeline steps (``llmdock jobs run``): ``shell``, ``batch.run``, ``datasets.import``,
``datasets.clean``, ``eval.run``, ``eval.gate``, ``models.register``, ``models.promote``, ``scan``, ``finetune``
and ``canary.run``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.hookspecs import hookimpl

if TYPE_CHECKING:
    from llmdock.jobs.steps import StepFactory


@hookimpl
def llmdock_job_steps() -> list[StepFactory]:
    from llmdock.jobs.drift_days_step import DriftDaysStep
    from llmdock.jobs.eval_steps import EvalGateStep, EvalRunStep, ScanStep
    from llmdock.jobs.finetune_step import FinetuneStep
    from llmdock.jobs.monitor_steps import CanaryRunStep
    from llmdock.jobs.service_steps import (
        DatasetCleanStep,
        DatasetImportStep,
        ModelPromoteStep,
        ModelRegisterStep,
    )
    from llmdock.jobs.steps import BUILTIN_STEPS

    return [
        *BUILTIN_STEPS,
        DatasetImportStep,
        DatasetCleanStep,
        EvalRunStep,
        EvalGateStep,
        ModelRegisterStep,
        ModelPromoteStep,
        ScanStep,
        FinetuneStep,
        CanaryRunStep,
        DriftDaysStep,
    ]
