"""Plugin loading: llmdock's built-ins (``llmdock.default_plugins``), then third-party packages, by the same hooks.

Each kind (backends, stages, detectors, metrics, job steps, dataset steps) is collected the first time it is
asked for: its hook is called then, and only then are the modules behind it imported. A url-only ``llmdock
eval run`` asks for the metrics alone, so it never imports the guards, the model backends or the pipeline's
stages; a third-party plugin is registered exactly as before, whichever hooks it implements.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pluggy

from llmdock.default_plugins import DEFAULT_PLUGINS
from llmdock.hookspecs import LlmdockSpec, StageFactory

if TYPE_CHECKING:
    from llmdock.backends.base import Backend
    from llmdock.datasets.steps.base import Step
    from llmdock.evaluate.case import MetricFactory
    from llmdock.guards.base import DetectorFactory
    from llmdock.jobs.steps import StepFactory


def _by_name(groups: Iterable[Iterable[Any]], key: str) -> dict[str, Any]:
    """One hook's answers merged: later-registered plugins (called first by pluggy) win on a name clash."""
    found: dict[str, Any] = {}
    for group in reversed(list(groups)):
        found.update({getattr(cls, key): cls for cls in group})
    return found


class Plugins:
    """The registered plugins; each kind is built from its hook on first use (then kept)."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._hook = pm.hook
        self.names: list[str] = [name for name, _ in pm.list_name_plugin()]

    @cached_property
    def backends(self) -> dict[str, type[Backend]]:
        return _by_name(self._hook.llmdock_backends(), "kind")

    @cached_property
    def stages(self) -> dict[str, StageFactory]:
        stages: dict[str, StageFactory] = {}
        for group in reversed(self._hook.llmdock_stages()):
            stages.update(group)
        return stages

    @cached_property
    def detectors(self) -> dict[str, DetectorFactory]:
        return _by_name(self._hook.llmdock_detectors(), "name")

    @cached_property
    def metrics(self) -> dict[str, MetricFactory]:
        return _by_name(self._hook.llmdock_metrics(), "name")

    @cached_property
    def job_steps(self) -> dict[str, StepFactory]:
        return _by_name(self._hook.llmdock_job_steps(), "name")

    @cached_property
    def dataset_steps(self) -> dict[str, type[Step]]:
        return _by_name(self._hook.llmdock_dataset_steps(), "name")

    def registered(self) -> dict[str, dict[str, object]]:
        """What stages may look up by kind (``StageEnv.plugins``): everything but stages and backends."""
        return {"detectors": dict(self.detectors), "metrics": dict(self.metrics)}


def load_plugins(entry_points: bool = True, extra: Sequence[object] = ()) -> Plugins:
    """Built-ins first (``DEFAULT_PLUGINS``), then every ``llmdock.plugins`` entry point, then ``extra``.

    A later plugin's backend, stage, detector or metric replaces a built-in of the same name. Registering
    imports the plugin modules (the built-ins import their classes only inside their hooks); no hook is
    called until its kind is asked for.
    """
    pm = pluggy.PluginManager("llmdock")
    pm.add_hookspecs(LlmdockSpec)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if entry_points:
        pm.load_setuptools_entrypoints("llmdock.plugins")
    for plugin in extra:
        pm.register(plugin)
    return Plugins(pm)
