"""The ``ground`` stage (answers grounded in a knowledge base, with citations) and the ``memory`` stage
(a session's previous turns)."""

from __future__ import annotations

from llmdock.hookspecs import StageFactory, hookimpl


@hookimpl
def llmdock_stages() -> dict[str, StageFactory]:
    from llmdock.rag.memory import MemoryStage
    from llmdock.rag.stage import GroundStage

    return {"ground": GroundStage, "memory": MemoryStage}
