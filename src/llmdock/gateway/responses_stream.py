"""A streamed Responses answer as the events OpenAI sends, built from the pipeline's chat chunks.

The order is OpenAI's: ``response.created``, ``response.in_progress``; per output item
``response.output_item.added``, then for a message ``response.content_part.added``,
``response.output_text.delta``…, ``response.output_text.done``, ``response.content_part.done``, or for a
tool call ``response.function_call_arguments.delta``…, ``response.function_call_arguments.done``; then
``response.output_item.done``; at the end ``response.completed`` (``response.incomplete`` when the answer
was cut at ``max_output_tokens``) carrying the whole response and its usage. Every event has a
``sequence_number``. An error once the stream has begun is an ``error`` event and ``response.failed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson

from llmdock.backends.base import StreamChunk
from llmdock.errors import LlmdockError
from llmdock.gateway.responses_translate import (
    ResponseDraft,
    call_item,
    final_status,
    message_item,
    responses_error,
    responses_usage,
    text_part,
)
from llmdock.gateway.sse import every_chunk
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.telemetry import token_counts

OnComplete = Callable[[dict[str, Any]], Awaitable[None]]


class EventWriter:
    """Encodes events as server-sent events, numbering them in order."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class OutputBuilder:
    """The output items of a stream as its chunks arrive, and the events that open, fill and close them."""

    def __init__(self, event: EventWriter, message_id: str) -> None:
        self.event = event
        self.message_id = message_id
        self.items: list[dict[str, Any]] = []  # finished items
        self.open: dict[str, Any] | None = None  # the item being written
        self.written = ""  # its text or arguments so far

    @property
    def index(self) -> int:
        return len(self.items)

    def text(self, delta: str) -> Iterator[bytes]:
        if self.open is not None and self.open["type"] != "message":
            yield from self.close("completed")
        if self.open is None:
            yield from self._start(message_item(self.message_id, None, "in_progress"))
            yield self.event(
                "response.content_part.added",
                item_id=self.message_id,
                output_index=self.index,
                content_index=0,
                part=text_part(""),
            )
        self.written += delta
        yield self.event(
            "response.output_text.delta",
            item_id=self.message_id,
            output_index=self.index,
            content_index=0,
            delta=delta,
            logprobs=[],
        )

    def call(self, delta: dict[str, Any]) -> Iterator[bytes]:
        """One OpenAI tool-call delta: a head (id and name) opens a ``function_call`` item."""
        fn = delta.get("function") or {}
        if delta.get("id"):
            if self.open is not None:
                yield from self.close("completed")
            head = {"id": delta["id"], "function": {"name": fn.get("name", ""), "arguments": ""}}
            yield from self._start(call_item(head, "in_progress"))
        arguments = fn.get("arguments") or ""
        if self.open is None or not arguments:
            return
        self.written += arguments
        yield self.event(
            "response.function_call_arguments.delta",
            item_id=self.open["id"],
            output_index=self.index,
            delta=arguments,
        )

    def _start(self, item: dict[str, Any]) -> Iterator[bytes]:
        self.open, self.written = item, ""
        yield self.event("response.output_item.added", output_index=self.index, item=item)

    def close(self, status: str) -> Iterator[bytes]:
        """Finish the open item (a message with ``status``: completed or incomplete)."""
        item, index, written = self.open, self.index, self.written
        if item is None:
            return
        self.open, self.written = None, ""
        if item["type"] == "message":
            where = {"item_id": item["id"], "output_index": index, "content_index": 0}
            yield self.event("response.output_text.done", **where, text=written, logprobs=[])
            yield self.event("response.content_part.done", **where, part=text_part(written))
            done = message_item(item["id"], written, status)
        else:
            done = {**item, "arguments": written, "status": "completed"}
            yield self.event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                name=item["name"],
                arguments=written,
            )
        self.items.append(done)
        yield self.event("response.output_item.done", output_index=index, item=done)

    def chunk(self, chunk: StreamChunk) -> Iterator[bytes]:
        if chunk.tool_calls:  # the canonical text riding on a call's first chunk is not the answer's text
            for delta in chunk.tool_calls:
                yield from self.call(delta)
        elif chunk.text:
            yield from self.text(chunk.text)


async def response_events(
    ctx: RequestContext,
    draft: ResponseDraft,
    first: StreamChunk | None,
    chunks: AsyncIterator[StreamChunk],
    on_complete: OnComplete,
) -> AsyncIterator[bytes]:
    """The events of one streamed response; ``on_complete`` gets the final response object (to store it)
    before ``response.completed`` is sent."""
    event = EventWriter()
    out = OutputBuilder(event, "msg_" + ctx.trace_id)
    try:
        yield event("response.created", response=draft.render("in_progress", []))
        yield event("response.in_progress", response=draft.render("in_progress", []))
        async for chunk in every_chunk(first, chunks):
            for encoded in out.chunk(chunk):
                yield encoded
        assert ctx.generation is not None
        status = final_status(ctx.generation.finish_reason)
        if out.open is None and not out.items:  # an empty answer is still one (empty) message
            for encoded in out.text(""):
                yield encoded
        for encoded in out.close(status):
            yield encoded
        if ctx.durable is not None:  # the trace is on disk before the response says it is complete
            await ctx.durable
        final = draft.render(status, out.items, responses_usage(*token_counts(ctx)))
        await on_complete(final)
        yield event(f"response.{status}", response=final)
    except LlmdockError as exc:  # the headers are gone: the error travels as events, then the stream ends
        error = responses_error(exc).to_body()["error"]
        yield event("error", code=error["code"], message=error["message"], param=error["param"])
        failed = draft.render("failed", out.items, error={"code": error["code"], "message": error["message"]})
        yield event("response.failed", response=failed)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
