"""The Pipeline runner: runs the configured stages in order, records a span per stage, finishes the trace.

The same Pipeline object serves the gateway, the CLI and (later) batch jobs and evaluations.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from llmdock.backends.base import Generation, StreamChunk
from llmdock.errors import ConfigError, LlmdockError
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.stages import (
    GenerateStage,
    RequestPlanner,
    Stage,
    StreamWrappingStage,
    record_route,
)
from llmdock.store.trace_records import SpanRecord

TraceSink = Callable[[RequestContext], None]
log = logging.getLogger("llmdock.pipeline")


_PIECE = re.compile(r"(?<=[ ,:\[\]{}])")


def text_pieces(text: str) -> list[str]:
    """A text cut after each space or JSON punctuation mark (at least one piece)."""
    return [p for p in _PIECE.split(text) if p] or [""]


async def _replay(gen: Generation) -> AsyncIterator[StreamChunk]:
    """Stream an answer a stage already has (a cache hit, a validated structured answer) piece by piece.

    Pieces end after a space or JSON punctuation, so compact JSON (no spaces) is not sent as one chunk.
    """
    pieces = text_pieces(gen.text)
    for i, piece in enumerate(pieces):
        yield StreamChunk(piece, gen.finish_reason if i == len(pieces) - 1 else None)


class Pipeline:
    def __init__(
        self, stages: Sequence[Stage], sink: TraceSink | None = None, where: str = "pipeline"
    ) -> None:
        self.stages = list(stages)
        self.sink = sink
        gen_index = next((i for i, s in enumerate(self.stages) if isinstance(s, GenerateStage)), None)
        if gen_index is None:
            raise ConfigError("a pipeline needs a generate stage", where=where)
        self._generate: GenerateStage = self.stages[gen_index]  # type: ignore[assignment]
        self._before = self.stages[:gen_index]
        self._after = self.stages[gen_index + 1 :]
        # the stage that prepares requests as they are built (response_format / tools), if any
        self.planner = next((s for s in self.stages if isinstance(s, RequestPlanner)), None)

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    async def _run_stage(self, stage: Stage, ctx: RequestContext) -> RequestContext:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        ctx._span_attrs = {}
        status = "ok"
        try:
            return await stage(ctx)
        except LlmdockError as exc:
            status = "error"
            ctx._span_attrs["error.type"] = exc.code
            raise
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            ctx.spans.append(
                SpanRecord(stage.name, started_at, (time.perf_counter() - t0) * 1000, status, ctx._span_attrs)
            )

    async def run(self, ctx: RequestContext) -> RequestContext:
        """Run every stage; on error the trace records it and the error propagates to the caller."""
        try:  # the loop is _through's, written out: one coroutine less on every request
            for stage in self.stages:
                ctx = await self._run_stage(stage, ctx)
        except LlmdockError as exc:
            self._fail(ctx, exc)
            raise
        except asyncio.CancelledError:
            ctx.status = "cancelled"
            self.finish(ctx)
            raise
        self.finish(ctx)
        return ctx

    async def prepare_stream(self, ctx: RequestContext) -> AsyncIterator[StreamChunk]:
        """Run the stages before generate, then return the stream of chunks.

        Errors before the first chunk (bad input, context window) raise here, so the caller can still
        answer with a proper HTTP error; errors after it end the stream.
        """
        ctx = await self._through(self._before, ctx)
        return self._stream(ctx)

    async def _through(self, stages: list[Stage], ctx: RequestContext) -> RequestContext:
        """Run ``stages`` in order; a stage's error is recorded on the trace, then raised."""
        try:
            for stage in stages:
                ctx = await self._run_stage(stage, ctx)
        except LlmdockError as exc:
            self._fail(ctx, exc)
            raise
        return ctx

    async def _stream(self, ctx: RequestContext) -> AsyncIterator[StreamChunk]:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        parts: list[str] = []
        finish_reason = "stop"
        first_token_ms: float | None = None
        chunks: AsyncIterator[StreamChunk] = (
            _replay(ctx.generation) if ctx.generation is not None else self._generate.open_stream(ctx)
        )
        span_at = len(ctx.spans)  # generate's span goes before the spans stream-wrapping stages record
        wrappers = [s for s in self._after if isinstance(s, StreamWrappingStage)]
        for stage in wrappers:
            chunks = stage.wrap_stream(ctx, chunks)
        status = "ok"
        try:
            async for chunk in chunks:
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - ctx.started) * 1000
                parts.append(chunk.text)
                if chunk.finish_reason:
                    finish_reason = chunk.finish_reason
                yield chunk
        except LlmdockError as exc:
            status = "error"
            self._record_stream_span(ctx, started_at, t0, status, first_token_ms, span_at)
            self._fail(ctx, exc)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = "cancelled"
            ctx.status = "cancelled"
            ctx.error = "client disconnected during the stream"
            ctx.generation = Generation(
                "".join(parts), ctx.request.n_prompt_tokens if ctx.request else 0, 0, "cancelled"
            )
            ctx.generation.completion_tokens = ctx.backend.count_tokens(ctx.generation.text)
            self._record_stream_span(ctx, started_at, t0, status, first_token_ms, span_at)
            self.finish(ctx)
            raise
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None and status != "ok":
                await close()
        ctx.generation = Generation(
            "".join(parts), ctx.request.n_prompt_tokens if ctx.request else 0, 0, finish_reason
        )
        self._record_stream_span(ctx, started_at, t0, status, first_token_ms, span_at)
        try:
            for after in self._after:
                if not isinstance(after, StreamWrappingStage):
                    ctx = await self._run_stage(after, ctx)
        except LlmdockError as exc:
            self._fail(ctx, exc)
            raise
        self.finish(ctx)

    def _record_stream_span(
        self,
        ctx: RequestContext,
        started_at: datetime,
        t0: float,
        status: str,
        first_token_ms: float | None,
        at: int,
    ) -> None:
        attrs: dict[str, object] = {"stream": True}
        if first_token_ms is not None:
            attrs["llmdock.time_to_first_token_ms"] = round(first_token_ms, 3)
        if ctx.generation is not None:
            attrs["gen_ai.response.finish_reasons"] = [ctx.generation.finish_reason]
        ctx._span_attrs = attrs
        record_route(ctx)
        span = SpanRecord("generate", started_at, (time.perf_counter() - t0) * 1000, status, attrs)
        ctx.spans.insert(at, span)

    def _fail(self, ctx: RequestContext, exc: LlmdockError) -> None:
        ctx.status = "error"
        ctx.http_status = exc.status
        ctx.error = f"{exc.code}: {exc.one_line()}"
        self.finish(ctx)

    def finish(self, ctx: RequestContext) -> None:
        if ctx.status == "ok":
            for callback in ctx.on_success:
                try:
                    callback(ctx)
                except Exception:  # a side effect (cache write) must never fail the request
                    log.exception("on_success callback failed for trace %s", ctx.trace_id)
        if self.sink is not None:
            self.sink(ctx)
