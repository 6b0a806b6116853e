"""A template's ``reasoning`` mode: the model is asked to think first, and only the answer reaches the user.

With ``config: {reasoning: true}`` the pre-process stage adds ``INSTRUCTION`` as a system message; the model
writes ``<reasoning>…</reasoning>`` and then the answer. The generate stage splits the two (``split``, or
``StreamSplitter`` chunk by chunk for a stream, so no reasoning text is ever sent): the client gets the
answer, the trace keeps the reasoning beside the request's messages (redacted and sealed with them).
Models that think natively in ``<think>…</think>`` (Qwen, DeepSeek-R1) are split the same way.

A model that skips the reasoning block is answered as is; one cut off inside it (``max_tokens``) has an empty
answer and ``finish_reason: length``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from llmdock.backends.base import StreamChunk

INSTRUCTION = (
    "Before answering, think step by step between <reasoning> and </reasoning>. "
    "Then write only the final answer after </reasoning>."
)
TAGS = (("<reasoning>", "</reasoning>"), ("<think>", "</think>"))


def split(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a complete text; no reasoning block → ("", text)."""
    head = text.lstrip()
    for opening, closing in TAGS:
        if head.startswith(opening):
            inner, found, rest = head[len(opening) :].partition(closing)
            return inner.strip(), rest.lstrip() if found else ""
    return "", text


class StreamSplitter:
    """Holds a stream's text back while it may be a reasoning block; passes the answer on as it comes."""

    def __init__(self) -> None:
        self.reasoning = ""
        self._held = ""
        self._closing: str | None = None  # inside a block: the tag that ends it
        self._answering = False
        self._after_block = False  # just past a block: whitespace before the answer is dropped

    def feed(self, text: str) -> str:
        """The part of ``text`` that is answer and may be sent now."""
        if self._answering:
            return self._trim(text)
        self._held += text
        if self._closing is None:
            head = self._held.lstrip()
            for opening, closing in TAGS:
                if head.startswith(opening):
                    self._closing, self._held = closing, head[len(opening) :]
                    break
            else:
                if any(opening.startswith(head) for opening, _ in TAGS):
                    return ""  # still possibly an opening tag
                self._answering = True
                out, self._held = self._held, ""
                return out
        inner, found, rest = self._held.partition(self._closing)
        if not found:
            return ""
        self.reasoning, self._held, self._answering, self._after_block = inner.strip(), "", True, True
        return self._trim(rest)

    def _trim(self, text: str) -> str:
        if self._after_block:
            text = text.lstrip()
            self._after_block = not text
        return text

    def end(self) -> str:
        """What is left when the stream ends: held text that never became a block is answer."""
        if self._closing is None and not self._answering:
            out, self._held = self._held, ""
            return out
        if not self._answering:  # cut off inside the block
            self.reasoning, self._held = self._held.strip(), ""
        return ""

    async def wrap(self, chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
        ended = False
        async for chunk in chunks:
            text = self.feed(chunk.text)
            if chunk.finish_reason:
                text, ended = text + self.end(), True
            if text or chunk.finish_reason or chunk.tool_calls:
                yield replace(chunk, text=text, logprobs=chunk.logprobs if text else None)
        if not ended and (rest := self.end()):
            yield StreamChunk(rest)
