"""The Stage contract and the built-in stages: pre-process, generate, post-process.

A stage is an object with a ``name``, ``bind(env)`` (called once with the runtime's services, see
``pipeline.env.StageEnv``) and ``async __call__(ctx) -> ctx``. Streaming adds two optional
methods: the generate stage *opens* the stream (``open_stream``), and stages after it may *wrap* it
(``wrap_stream``); stages after generate without ``wrap_stream`` run once the stream has ended, on the
complete text. Stages are listed by name in the settings, and registered through the plugin hooks.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol, runtime_checkable

from llmdock.backends.base import Generation, StreamChunk
from llmdock.backends.operations import OPERATIONS
from llmdock.config import Settings
from llmdock.errors import InvalidRequest
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.env import StageEnv
from llmdock.prompts.apply import apply_prompt
from llmdock.prompts.reasoning import StreamSplitter, split


@runtime_checkable
class Stage(Protocol):
    name: str

    def bind(self, env: StageEnv) -> None:
        """Called once the runtime exists, before the first request: take what the stage needs from ``env``."""

    async def __call__(self, ctx: RequestContext) -> RequestContext: ...


@runtime_checkable
class StreamWrappingStage(Stage, Protocol):
    def wrap_stream(
        self, ctx: RequestContext, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]: ...


@runtime_checkable
class RequestPlanner(Stage, Protocol):
    """A stage that also prepares each request as it is built, before any stage runs (the structured stage:
    it checks ``structured_fields`` and sets ``structured``). Raises InvalidRequest for a bad request."""

    def plan(self, ctx: RequestContext) -> None: ...


def _normalize_content(content: Any, form: Literal["NFC", "NFD", "NFKC", "NFKD"]) -> Any:
    if isinstance(content, str):
        return unicodedata.normalize(form, content)
    if isinstance(content, list):
        return [
            {**part, "text": unicodedata.normalize(form, part["text"])}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def flatten_content(content: Any) -> str:
    """OpenAI content may be a string or a list of parts; templates want text."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


class _NormalizingStage:
    """A stage that needs only the configured Unicode normalization form."""

    name = ""

    def __init__(self, settings: Settings) -> None:
        self.form = settings.unicode_normalization

    def bind(self, env: StageEnv) -> None:
        pass


class PreprocessStage(_NormalizingStage):
    """Renders a prompt template, normalizes Unicode, renders the prompt, counts tokens with the model's tokenizer, checks the window."""

    name = "preprocess"

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        if OPERATIONS[ctx.operation].embeds:
            if self.form != "none":
                ctx.inputs = [unicodedata.normalize(self.form, t) for t in ctx.inputs]
            ctx.annotate(input_texts=len(ctx.inputs))
            return ctx
        req = ctx.request
        assert req is not None
        if ctx.prompt is not None:
            if ctx.reasoning_mode and ctx.structured_fields:
                raise InvalidRequest(
                    f"prompt {ctx.prompt.ref} answers in reasoning mode, which cannot be combined with "
                    "response_format or tools",
                    param="prompt_id",
                )
            apply_prompt(ctx.prompt, req)
            ctx.attributes.update(ctx.prompt.attributes())
            ctx.annotate(**{"llmdock.prompt": ctx.prompt.ref})
        if req.messages is not None:
            req.messages = [
                {
                    **m,
                    "content": flatten_content(
                        _normalize_content(m.get("content"), self.form)
                        if self.form != "none"
                        else m.get("content")
                    ),
                }
                for m in req.messages
            ]
        if req.prompt is not None and self.form != "none":
            req.prompt = unicodedata.normalize(self.form, req.prompt)
        await ctx.backend.ensure_started()
        ctx.backend.prepare(req)
        ctx.annotate(
            **{
                "gen_ai.usage.input_tokens": req.n_prompt_tokens,
                "llmdock.context_window": ctx.backend.context_window,
                "gen_ai.request.max_tokens": req.params.max_tokens,
            }
        )
        return ctx


class GenerateStage:
    """Asks the backend for the answer (or opens its stream)."""

    name = "generate"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def bind(self, env: StageEnv) -> None:
        pass

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        if OPERATIONS[ctx.operation].embeds:
            ctx.embedding = await ctx.backend.embed(ctx.inputs)
            ctx.annotate(**{"gen_ai.usage.input_tokens": ctx.embedding.prompt_tokens})
            return ctx
        if ctx.generation is not None:  # an earlier stage answered (cache, guard)
            ctx.annotate(skipped=True)
            return ctx
        assert ctx.request is not None
        ctx.generation = await ctx.backend.generate(ctx.request)
        if ctx.reasoning_mode:
            ctx.reasoning, ctx.generation.text = split(ctx.generation.text)
            ctx.annotate(**{"llmdock.reasoning_chars": len(ctx.reasoning)})
        self._annotate(ctx, ctx.generation)
        record_route(ctx)
        if ctx.generation.served:  # what the upstream says answered (model snapshot, fingerprint)
            served = {f"llmdock.served_{k}": v for k, v in ctx.generation.served.items()}
            ctx.annotate(**served)
            ctx.attributes.update(served)
        return ctx

    def open_stream(self, ctx: RequestContext) -> AsyncIterator[StreamChunk]:
        assert ctx.request is not None
        chunks = ctx.backend.stream(ctx.request)
        return _answer_only(ctx, chunks) if ctx.reasoning_mode else chunks

    @staticmethod
    def _annotate(ctx: RequestContext, gen: Generation) -> None:
        ctx.annotate(
            **{
                "gen_ai.usage.output_tokens": gen.completion_tokens,
                "gen_ai.response.finish_reasons": [gen.finish_reason],
            }
        )


async def _answer_only(ctx: RequestContext, chunks: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
    """The stream without its reasoning block, which lands on ``ctx.reasoning`` once it is complete."""
    splitter = StreamSplitter()
    async for chunk in splitter.wrap(chunks):
        ctx.reasoning = splitter.reasoning
        yield chunk
    ctx.reasoning = splitter.reasoning


def record_route(ctx: RequestContext) -> None:
    """Put where the router sent the request (deployment, attempts, fallback, cost) on span and trace."""
    info = ctx.request.route.get("served") if ctx.request else None
    if not info:
        return
    attrs = {
        "llmdock.deployment": info["deployment"],
        "llmdock.attempts": info["attempts"],
        "llmdock.served_by_model": info["model"],
        "gen_ai.provider.name": info["backend"],
        # llmdock.served_model_file, and for a registered model llmdock.served_model_version / _artifact
        **{f"llmdock.served_{k}": v for k, v in info.get("origin", {}).items()},
    }
    ctx.annotate(**attrs)
    ctx.attributes.update(attrs)


class PostprocessStage(_NormalizingStage):
    """Normalizes the answer's Unicode and settles its token count with the model's own tokenizer."""

    name = "postprocess"

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        gen = ctx.generation
        if gen is None:
            return ctx
        if self.form != "none":
            gen.text = unicodedata.normalize(self.form, gen.text)
        if not gen.completion_tokens and gen.text:
            gen.completion_tokens = ctx.backend.count_tokens(gen.text)
        ctx.annotate(**{"gen_ai.usage.output_tokens": gen.completion_tokens, "output_chars": len(gen.text)})
        return ctx
