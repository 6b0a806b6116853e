"""Plugin loading: llmdock's built-ins (``llmdock.default_plugins``), then third-party packages, by the same hooks."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pluggy

from llmdock.backends.base import Backend
from llmdock.datasets.steps.base import Step
from llmdock.default_plugins import DEFAULT_PLUGINS
from llmdock.evaluate.case import MetricFactory
from llmdock.guards.base import DetectorFactory
from llmdock.hookspecs import LlmdockSpec, StageFactory
from llmdock.jobs.steps import StepFactory


@dataclass(frozen=True)
class Plugins:
    backends: dict[str, type[Backend]]
    stages: dict[str, StageFactory]
    detectors: dict[str, DetectorFactory]
    metrics: dict[str, MetricFactory]
    names: list[str]
    job_steps: dict[str, StepFactory] = field(default_factory=dict)
    dataset_steps: dict[str, type[Step]] = field(default_factory=dict)

    def registered(self) -> dict[str, dict[str, object]]:
        """What stages may look up by kind (``StageEnv.plugins``): everything but stages and backends."""
        return {"detectors": dict(self.detectors), "metrics": dict(self.metrics)}


def load_plugins(entry_points: bool = True, extra: Sequence[object] = ()) -> Plugins:
    """Built-ins first (``DEFAULT_PLUGINS``), then every ``llmdock.plugins`` entry point, then ``extra``.

    A later plugin's backend, stage, detector or metric replaces a built-in of the same name.
    """
    pm = pluggy.PluginManager("llmdock")
    pm.add_hookspecs(LlmdockSpec)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        pm.load_setuptools_entrypoints("llmdock.plugins")
    for plugin in extra:
        pm.register(plugin)
    backends: dict[str, type[Backend]] = {}
    for group in reversed(pm.hook.llmdock_backends()):
        backends.update({cls.kind: cls for cls in group})
    stages: dict[str, StageFactory] = {}
    for stage_group in reversed(pm.hook.llmdock_stages()):
        stages.update(stage_group)
    detectors: dict[str, DetectorFactory] = {}
    for detector_group in reversed(pm.hook.llmdock_detectors()):
        detectors.update({cls.name: cls for cls in detector_group})
    metrics: dict[str, MetricFactory] = {}
    for metric_group in reversed(pm.hook.llmdock_metrics()):
        metrics.update({cls.name: cls for cls in metric_group})
    names = [name for name, _ in pm.list_name_plugin()]
    job_steps: dict[str, StepFactory] = {}
    for step_group in reversed(pm.hook.llmdock_job_steps()):
        job_steps.update({cls.name: cls for cls in step_group})
    steps = {cls.name: cls for group in reversed(pm.hook.llmdock_dataset_steps()) for cls in group}
    return Plugins(
        backends=backends,
        stages=stages,
        detectors=detectors,
        metrics=metrics,
        names=names,
        job_steps=job_steps,
        dataset_steps=steps,
    )
