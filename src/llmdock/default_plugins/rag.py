"""The ``ground`` stage (answers grounded in a knowledge base, with citations) and the ``memory`` stage
(a session's previous turns), and the RAG answer metrics (faithfulness, answer-correctness,
context-precision, context-recall, context-recall-claims)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.hookspecs import StageFactory, hookimpl

if TYPE_CHECKING:
    from llmdock.evaluate.case import MetricFactory


@hookimpl
def llmdock_stages() -> dict[str, StageFactory]:
    from llmdock.rag.memory import MemoryStage
    from llmdock.rag.stage import GroundStage

    return {"ground": GroundStage, "memory": MemoryStage}


@hookimpl
def llmdock_metrics() -> list[MetricFactory]:
    from llmdock.rag.metrics import RAG_METRICS

    return list(RAG_METRICS)
