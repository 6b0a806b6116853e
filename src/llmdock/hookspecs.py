"""The plugin hooks. Built-in backends, stages, detectors and metrics register through these same hooks
(default_plugins/).

A third-party package adds a backend, a stage, a guard detector or an evaluation metric with one module and
one entry point in the ``llmdock.plugins`` group; nothing in llmdock's core changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from llmdock.backends.base import Backend
    from llmdock.config import Settings
    from llmdock.datasets.steps.base import Step
    from llmdock.evaluate.case import MetricFactory
    from llmdock.guards.base import DetectorFactory
    from llmdock.jobs.steps import StepFactory
    from llmdock.pipeline.stages import Stage

hookspec = pluggy.HookspecMarker("llmdock")
hookimpl = pluggy.HookimplMarker("llmdock")

StageFactory = Callable[["Settings"], "Stage"]


class LlmdockSpec:
    @hookspec
    def llmdock_backends(self) -> list[type[Backend]]:  # type: ignore[empty-body]
        """Backend classes this plugin provides; each is known by its ``kind``."""

    @hookspec
    def llmdock_stages(self) -> dict[str, StageFactory]:  # type: ignore[empty-body]
        """Pipeline stages by name: a factory taking the Settings and returning the stage.

        The runtime then calls ``stage.bind(env)`` once with a ``pipeline.env.StageEnv`` (models, store,
        shared state, privacy, registered detectors) before the first request.
        """

    @hookspec
    def llmdock_detectors(self) -> list[DetectorFactory]:  # type: ignore[empty-body]
        """Guard detector classes (see llmdock.guards.base); each is known by its ``name`` in policies."""

    @hookspec
    def llmdock_metrics(self) -> list[MetricFactory]:  # type: ignore[empty-body]
        """Evaluation metric classes (see llmdock.evaluate.case); each is known by its ``name`` in a
        suite's ``assert`` list (``type:``)."""

    @hookspec
    def llmdock_job_steps(self) -> list[StepFactory]:  # type: ignore[empty-body]
        """Pipeline step classes (see llmdock.jobs.steps); each is known by its ``name`` in a pipeline
        YAML's ``uses:``."""

    @hookspec
    def llmdock_dataset_steps(self) -> list[type[Step]]:  # type: ignore[empty-body]
        """Dataset cleaning step classes (see llmdock.datasets.steps.base); each is known by its ``name`` in
        ``llmdock datasets clean --step`` and recipes."""
