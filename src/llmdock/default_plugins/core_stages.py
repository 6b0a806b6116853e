"""The pipeline's own stages: pre-process, generate, post-process."""

from __future__ import annotations

from llmdock.hookspecs import StageFactory, hookimpl


@hookimpl
def llmdock_stages() -> dict[str, StageFactory]:
    from llmdock.pipeline.stages import GenerateStage, PostprocessStage, PreprocessStage

    return {"preprocess": PreprocessStage, "generate": GenerateStage, "postprocess": PostprocessStage}
