"""Server-sent events: the response that sends them, and the OpenAI chunk events of a generation stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llmdock.backends.base import StreamChunk
from llmdock.errors import InvalidRequest, LlmdockError
from llmdock.gateway.responses import usage
from llmdock.pipeline.context import RequestContext


def sse_event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class SSEResponse(Response):
    """Server-sent events from an async iterator of encoded events.

    A watcher task listens for the client's disconnect and cancels the stream at once, so generation stops
    even while no token is being sent; the iterator is always closed.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> None:
        super().__init__(content=None, status_code=200, headers=headers)
        del self.headers["content-length"]
        self.headers["cache-control"] = "no-cache"
        self.headers["x-accel-buffering"] = "no"
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        streamer = asyncio.ensure_future(self._send_all(send))

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    streamer.cancel()
                    return

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await streamer
        except (asyncio.CancelledError, OSError):
            if not watcher.done() and not streamer.cancelled():
                raise
        finally:
            watcher.cancel()

    async def _send_all(self, send: Send) -> None:
        try:
            async for event in self.events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                await aclose()


async def every_chunk(
    first: StreamChunk | None, chunks: AsyncIterator[StreamChunk]
) -> AsyncIterator[StreamChunk]:
    if first is not None:
        yield first
    async for chunk in chunks:
        yield chunk


async def completion_events(
    ctx: RequestContext,
    first: StreamChunk | None,
    chunks: AsyncIterator[StreamChunk],
    include_usage: bool,
) -> AsyncIterator[bytes]:
    """A chat or text completion stream as OpenAI sends it: chunk events, the usage if asked, ``[DONE]``.

    ``first`` is the chunk the caller already awaited (before answering 200); an error after it travels as
    an error event, since the headers are gone.
    """
    assert ctx.request is not None
    req = ctx.request
    op = req.op
    echo = req.prompt_text if req.echo else ""  # text completions: the prompt comes first
    base = {
        "id": op.id_prefix + ctx.trace_id,
        "object": op.chunk_object,
        "created": int(time.time()),
        "model": ctx.model,
    }
    try:
        opening = op.opening_choice()
        if opening is not None:  # a grounded chat's sources come with the first event (docs/rag.md)
            cited = ctx.attributes.get("llmdock.ground.citations")
            yield sse_event(
                {**base, **({"citations": cited} if cited is not None else {}), "choices": [opening]}
            )
        async for chunk in every_chunk(first, chunks):
            if req.logprobs is not None and chunk.text and chunk.logprobs is None:
                raise InvalidRequest(
                    "the answer was changed as it streamed (a guard or structured output re-cut it), so its "
                    "log-probabilities do not describe it: leave out logprobs",
                    param="logprobs",
                )
            if echo:
                chunk = replace(chunk, text=echo + chunk.text)
                echo = ""
            yield sse_event({**base, "choices": [op.chunk_choice(chunk)]})
        if include_usage:
            yield sse_event({**base, "choices": [], "usage": usage(ctx)})
        if ctx.durable is not None:  # the stream ended (trace finished): [DONE] once it is on disk
            await ctx.durable
        yield SSE_DONE
    except LlmdockError as exc:
        # Headers are gone already: the error travels as an SSE event, then the stream ends.
        yield sse_event(exc.to_body())
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
