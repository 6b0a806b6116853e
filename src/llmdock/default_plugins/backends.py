"""The built-in backends: embedded llama.cpp, OpenAI-compatible servers, sentence-transformers, fake."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.hookspecs import hookimpl

if TYPE_CHECKING:
    from llmdock.backends.base import Backend


@hookimpl
def llmdock_backends() -> list[type[Backend]]:
    # Imported when the hook runs: each backend pulls its own heavy libraries (llama_cpp, torch, httpx).
    from llmdock.backends.fake import FakeBackend
    from llmdock.backends.llamacpp import LlamaCppBackend
    from llmdock.backends.openai_compat import OpenAICompatBackend
    from llmdock.backends.sentence_transformers import SentenceTransformersBackend

    return [LlamaCppBackend, OpenAICompatBackend, FakeBackend, SentenceTransformersBackend]
