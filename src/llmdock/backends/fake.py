"""A deterministic stand-in backend, named as such: for unit tests and for measuring gateway overhead.

It answers ``reply`` if configured, else ``"fake answer to: <last user text>"``; tokens are words.
``delay_s`` adds a fixed latency per request and ``token_delay_s`` per streamed token, so tests can model
slow upstreams without a network.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from llmdock.backends.base import (
    Backend,
    BackendParams,
    EmbeddingResult,
    Generation,
    GenerationRequest,
    StreamChunk,
)


class FakeParams(BackendParams):
    reply: str | None = None
    delay_s: float = Field(default=0.0, ge=0)
    token_delay_s: float = Field(default=0.0, ge=0)
    dimensions: int = Field(default=8, gt=0)


class FakeBackend(Backend):
    kind = "fake"
    Params = FakeParams
    params: FakeParams

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def prepare(self, req: GenerationRequest) -> None:
        req.prompt_text = req.op.read_input(req, _role_lines, _as_is)
        req.n_prompt_tokens = self.count_tokens(req.prompt_text)
        req.stop = list(req.params.stop)
        self.check_window(req)

    def _answer(self, req: GenerationRequest) -> tuple[str, str]:
        if self.params.reply is not None:
            text = self.params.reply
        else:
            text = req.op.read_input(req, _answer_last_user, _complete)
        words = text.split(" ")
        limit = req.params.max_tokens
        if limit is not None and len(words) > limit:
            return " ".join(words[:limit]), "length"
        return text, "stop"

    async def generate(self, req: GenerationRequest) -> Generation:
        if self.params.delay_s:
            await asyncio.sleep(self.params.delay_s)
        text, finish = self._answer(req)
        return Generation(text, req.n_prompt_tokens, self.count_tokens(text), finish)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        if self.params.delay_s:
            await asyncio.sleep(self.params.delay_s)
        text, finish = self._answer(req)
        words = text.split(" ")
        for i, word in enumerate(words):
            if self.params.token_delay_s:
                await asyncio.sleep(self.params.token_delay_s)
            last = i == len(words) - 1
            yield StreamChunk(word if i == 0 else " " + word, finish if last else None)

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        vectors = []
        for t in texts:
            digest = hashlib.sha256(t.encode()).digest()
            vectors.append([b / 255.0 for b in digest[: self.params.dimensions]])
        return EmbeddingResult(vectors, sum(self.count_tokens(t) for t in texts))


def _role_lines(messages: list[dict[str, Any]]) -> str:
    return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages)


def _as_is(prompt: str) -> str:
    return prompt


def _answer_last_user(messages: list[dict[str, Any]]) -> str:
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    return f"fake answer to: {last.get('content', '')}"


def _complete(prompt: str) -> str:
    return f"fake completion of: {prompt}"
