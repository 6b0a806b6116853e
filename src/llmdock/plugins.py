"""Plugin loading, and llmdock's own built-ins registered through the same hooks as any plugin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pluggy

from llmdock.backends.base import Backend
from llmdock.guards.base import DetectorFactory
from llmdock.hookspecs import LlmdockSpec, StageFactory, hookimpl


@hookimpl
def llmdock_backends() -> list[type[Backend]]:
    from llmdock.backends.fake import FakeBackend
    from llmdock.backends.llamacpp import LlamaCppBackend
    from llmdock.backends.openai_compat import OpenAICompatBackend
    from llmdock.backends.sentence_transformers import SentenceTransformersBackend

    return [LlamaCppBackend, OpenAICompatBackend, FakeBackend, SentenceTransformersBackend]


@hookimpl
def llmdock_stages() -> dict[str, StageFactory]:
    from llmdock.cache import CacheStage
    from llmdock.guards import GuardInStage, GuardOutStage
    from llmdock.pipeline.stages import GenerateStage, PostprocessStage, PreprocessStage
    from llmdock.structured import StructuredStage

    return {
        "preprocess": PreprocessStage,
        "cache": CacheStage,
        "guard_in": GuardInStage,
        "generate": GenerateStage,
        "guard_out": GuardOutStage,
        "structured": StructuredStage,
        "postprocess": PostprocessStage,
    }


@hookimpl
def llmdock_detectors() -> list[DetectorFactory]:
    from llmdock.guards.detectors import BUILTIN_DETECTORS

    return list(BUILTIN_DETECTORS)


@dataclass(frozen=True)
class Plugins:
    backends: dict[str, type[Backend]]
    stages: dict[str, StageFactory]
    detectors: dict[str, DetectorFactory]
    names: list[str]


def load_plugins(entry_points: bool = True, extra: Sequence[object] = ()) -> Plugins:
    """Built-ins first (under the name ``builtin``), then every ``llmdock.plugins`` entry point, then ``extra``."""
    import llmdock.plugins as builtin

    pm = pluggy.PluginManager("llmdock")
    pm.add_hookspecs(LlmdockSpec)
    pm.register(builtin, name="builtin")
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
    names = [name for name, _ in pm.list_name_plugin()]
    return Plugins(backends=backends, stages=stages, detectors=detectors, names=names)
