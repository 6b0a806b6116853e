"""The ``structured`` stage: JSON mode, JSON schemas and tool calls, validated, repaired or asked again."""

from __future__ import annotations

from llmdock.hookspecs import StageFactory, hookimpl


@hookimpl
def llmdock_stages() -> dict[str, StageFactory]:
    from llmdock.structured import StructuredStage

    return {"structured": StructuredStage}
