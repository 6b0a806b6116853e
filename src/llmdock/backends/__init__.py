"""Backends: the Backend base class and the built-in kinds (registered through the plugin hooks)."""

from llmdock.backends.base import (
    Backend,
    BackendParams,
    EmbeddingResult,
    Generation,
    GenerationRequest,
    SamplingParams,
    StreamChunk,
)

__all__ = [
    "Backend",
    "BackendParams",
    "EmbeddingResult",
    "Generation",
    "GenerationRequest",
    "SamplingParams",
    "StreamChunk",
]
