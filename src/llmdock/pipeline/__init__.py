"""The staged request pipeline: RequestContext, the Stage contract, built-in stages and the runner."""

from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.env import StageEnv
from llmdock.pipeline.runner import Pipeline
from llmdock.pipeline.stages import GenerateStage, PostprocessStage, PreprocessStage, Stage

__all__ = [
    "GenerateStage",
    "Pipeline",
    "PostprocessStage",
    "PreprocessStage",
    "RequestContext",
    "Stage",
    "StageEnv",
]
