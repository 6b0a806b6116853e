"""The ``guard_in`` and ``guard_out`` stages and the built-in detectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.hookspecs import StageFactory, hookimpl

if TYPE_CHECKING:
    from llmdock.guards.base import DetectorFactory


@hookimpl
def llmdock_stages() -> dict[str, StageFactory]:
    from llmdock.guards import GuardInStage, GuardOutStage

    return {"guard_in": GuardInStage, "guard_out": GuardOutStage}


@hookimpl
def llmdock_detectors() -> list[DetectorFactory]:
    from llmdock.guards.detectors import BUILTIN_DETECTORS

    return list(BUILTIN_DETECTORS)
