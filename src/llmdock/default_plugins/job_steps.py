"""The built-in pipeline steps (``llmdock jobs run``): ``shell`` and ``batch.run``."""

from __future__ import annotations

from llmdock.hookspecs import hookimpl
from llmdock.jobs.steps import StepFactory


@hookimpl
def llmdock_job_steps() -> list[StepFactory]:
    from llmdock.jobs.steps import BUILTIN_STEPS

    return list(BUILTIN_STEPS)
