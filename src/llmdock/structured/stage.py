"""The structured stage: no answer that breaks its JSON schema or its tools is returned as a success.

Placed after ``generate``. For every request with ``response_format`` or ``tools`` it judges the answer
(:mod:`llmdock.structured.judge`); an invalid one is repaired, else the model is asked again — with the
error, or with a request to be shorter if it was cut off at ``max_tokens`` — up to the model's
``structured_retries`` times; then the request fails with :class:`InvalidStructuredOutput` (HTTP 502).
What happened (valid, repaired, reasked, failed; the errors) goes on the span and the trace.

Streams of a JSON answer whose grammar the backend enforces (the embedded model; no tool calls, a schema the
converter could express) are *live*: chunks pass as generated, since the grammar admits only JSON of the
right shape (narrowed to fit ``max_tokens`` from the first token where the schema can be bounded), and the
whole answer is judged at the end for what the grammar cannot check (formats,
``multipleOf``, an answer cut off at ``max_tokens``). If that fails the client already has the text, so there
is no re-ask: the stream ends with an error event (``invalid_structured_output``) instead of a finish reason.

Other streams are buffered: the answer is generated and judged in full before the first chunk is sent, then
sent in chunks (content deltas, or tool-call deltas as OpenAI streams them). So a stream never carries
invalid JSON, a failure is a proper HTTP error rather than a broken stream, and re-asks work for streams
too; the price is that the first token arrives with the last.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace

import orjson

from llmdock.backends.base import Generation, GenerationRequest, StreamChunk
from llmdock.config import Settings
from llmdock.errors import ContextWindowExceeded, InvalidStructuredOutput
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.env import StageEnv
from llmdock.structured.budget import fit_schema, object_caps
from llmdock.structured.grammar import (
    GrammarUnavailable,
    bounded_object_grammar,
    calls_or_text,
    json_grammar,
    schema_grammar,
)
from llmdock.structured.judge import Verdict, judge, openai_tool_calls
from llmdock.structured.plan import (
    CompiledSchema,
    StructuredPlan,
    build_plan,
    grammar_key,
    plan_of,
    route_backends,
)
from llmdock.structured.schemas import SchemaValidator, check_schema, nest_schema, unenforced_keywords

MAX_PARALLEL_CALLS = 8  # calls the grammar admits in one answer when parallel_tool_calls is true
ARGUMENT_CHUNK = 24  # characters of arguments per streamed tool-call delta


def compile_schema(schema_json: str, param: str) -> CompiledSchema:
    """Check a client's schema (400 naming ``param``) and build its validator."""
    schema = orjson.loads(schema_json)
    check_schema(schema, param)
    return CompiledSchema(schema, SchemaValidator(schema), unenforced_keywords(schema))


def _convertible(schema: dict[str, object]) -> bool:
    try:
        schema_grammar(schema)
    except GrammarUnavailable:
        return False
    return True


def _fitted(schema: dict[str, object], budget: int, kind: str) -> tuple[str, str]:
    """The grammar of ``schema``, narrowed to answers of at most ``budget`` characters if that can be done."""
    fitted = fit_schema(schema, budget) if budget > 0 else None
    if fitted is not None:
        narrowed, fits = fitted
        return schema_grammar(narrowed), f"{kind}+{'budget' if fits else 'tightest'}"
    return schema_grammar(schema), kind


def build_grammar(key: str, budget: int = 0) -> tuple[str, str]:
    """(GBNF, kind) for a plan's grammar key (see :func:`llmdock.structured.plan.grammar_key`).

    A schema the converter cannot express is replaced by "any JSON object/value" (kind ``*-fallback``): the
    model then still writes JSON, and validation with re-asks enforces the rest. With a ``budget`` (characters,
    for a re-ask after a cut-off answer) the schema is narrowed so that every answer fits it, where it can be
    (kind ``…+budget``; ``…+tightest`` when even the tightest narrowing may be longer; see
    :mod:`llmdock.structured.budget`); JSON-object mode then gets an object with caps on its size
    (``json+budget``).
    """
    spec = orjson.loads(key)
    content, schema, tools = spec["content"], spec["schema"], spec["tools"]
    if not tools:
        if content == "json_object":
            if budget > 0:  # any object, with caps on its size so that it closes within the budget
                members, chars, nested, digits = object_caps(budget)
                return bounded_object_grammar(members, chars, nested, digits), "json+budget"
            return json_grammar("object"), "json"
        try:
            return _fitted(schema, budget, "schema")
        except GrammarUnavailable:
            return json_grammar("value"), "schema-fallback"
    kind = "tools"
    defs: dict[str, object] = {}
    alternatives = []
    for i, (name, params) in enumerate(sorted(tools.items())):
        if not _convertible(params):
            params, kind = {"type": "object"}, "tools-fallback"
        defs[f"tool-{i}"] = nest_schema(params, f"tool-{i}")
        alternatives.append(
            {
                "type": "object",
                "properties": {"name": {"const": name}, "arguments": {"$ref": f"#/$defs/tool-{i}"}},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    calls = {
        "type": "array",
        "items": alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives},
        "minItems": 1,
        "maxItems": MAX_PARALLEL_CALLS if spec["parallel"] else 1,
    }
    if spec["required"]:
        return _fitted({**calls, "$defs": defs}, budget, kind)
    if content == "text":  # free text has no length a grammar could bound
        return calls_or_text(schema_grammar({**calls, "$defs": defs})), kind + "+text"
    if content == "json_object" or not _convertible(schema):
        answer: dict[str, object] = {"type": "object"} if content == "json_object" else {}
        kind += "+json"
    else:
        defs["answer"] = nest_schema(schema, "answer")
        answer = {"$ref": "#/$defs/answer"}
        kind += "+schema"
    return _fitted({"anyOf": [calls, answer], "$defs": defs}, budget, kind)


def live(ctx: RequestContext, plan: StructuredPlan) -> bool:
    """Whether a stream may pass the answer on as it is generated: a JSON answer (no tool calls) whose
    grammar every backend of the route enforces, so only checks the grammar cannot make (formats, multipleOf…)
    are left for the end."""
    return (
        not plan.native
        and not plan.calls_allowed
        and plan.grammar in ("schema", "json", "schema+budget", "schema+tightest", "json+budget")
        and all(type(b).enforces_grammar for b in route_backends(ctx.backend))
    )


def replay(gen: Generation) -> list[StreamChunk]:
    """A judged answer as stream chunks, shaped like OpenAI's deltas."""
    if gen.tool_calls:
        chunks = []
        for i, call in enumerate(gen.tool_calls):
            fn = call["function"]
            head = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": ""},
            }
            # The canonical text rides on the first chunk, so the stream's text is what traces and caches keep.
            chunks.append(StreamChunk(gen.text if i == 0 else "", tool_calls=[head]))
            args = fn["arguments"]
            for start in range(0, len(args), ARGUMENT_CHUNK):
                piece = args[start : start + ARGUMENT_CHUNK]
                chunks.append(StreamChunk("", tool_calls=[{"index": i, "function": {"arguments": piece}}]))
        return [*chunks, StreamChunk("", gen.finish_reason)]
    from llmdock.pipeline.runner import text_pieces

    pieces = text_pieces(gen.text)
    return [
        StreamChunk(piece, gen.finish_reason if i == len(pieces) - 1 else None)
        for i, piece in enumerate(pieces)
    ]


class StructuredStage:
    name = "structured"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._retries: dict[str, int] = {}
        # Per stage (not module) caches: a schema is checked and converted once, however often it is sent.
        self._compile = functools.lru_cache(maxsize=512)(compile_schema)
        self._grammar = functools.lru_cache(maxsize=256)(build_grammar)

    def bind(self, env: StageEnv) -> None:
        pass

    def plan(self, ctx: RequestContext) -> None:
        """Check a chat request's response_format / tools / tool_choice (``ctx.structured_fields``) and
        prepare its request for them (a :class:`~llmdock.pipeline.stages.RequestPlanner`)."""
        if ctx.structured_fields is None:
            return
        plan = ctx.structured = build_plan(ctx, self._compile, self._grammar, **ctx.structured_fields)
        req = ctx.request
        if plan is None or req is None or not req.params.max_tokens or not ctx.stream:
            return
        if plan.grammar in ("json", "schema") and not plan.calls_allowed:
            # A live stream cannot be asked again once cut off, so its answer is bounded from the first token.
            req.grammar, plan.grammar = self._grammar(grammar_key(plan), req.params.max_tokens - 1)

    def retries(self, model: str) -> int:
        found = self._retries.get(model)
        if found is None:
            cfg = self.settings.all_models().get(model)
            found = self._retries[model] = cfg.structured_retries if cfg is not None else 2
        return found

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        if ctx.structured is None or ctx.generation is None:  # most requests: no call at all
            return ctx
        plan = plan_of(ctx)
        if plan is None:
            return ctx
        await self._settle(ctx, plan)
        return ctx

    def wrap_stream(
        self, ctx: RequestContext, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        plan = plan_of(ctx)
        if plan is None:
            return chunks
        if live(ctx, plan):
            return self._live(ctx, plan, chunks)
        return self._buffered(ctx, plan, chunks)

    async def _live(
        self, ctx: RequestContext, plan: StructuredPlan, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        """Chunks pass as generated; the whole answer is judged at the end, before the finish reason."""
        async with contextlib.aclosing(self._collect(ctx, chunks, forward=True)) as passing:
            async for chunk in passing:
                yield chunk
        assert ctx.generation is not None
        text, finish = ctx.generation.text, ctx.generation.finish_reason
        ctx.attributes["llmdock.structured.stream"] = "live"
        verdict = judge(plan, text, truncated=finish == "length")
        if not verdict.ok or verdict.repaired:  # a repair would change text the client already has
            error = verdict.error or "the answer is not valid JSON as written"
            plan.errors.append(error)
            self._fail(ctx, plan, f"{error} (the stream had sent the answer as it was generated: no re-ask)")
        plan.outcome = "valid"
        ctx.generation.finish_reason = "stop"
        attrs = plan.attributes()
        ctx.annotate(**attrs)
        ctx.attributes.update(attrs)
        yield StreamChunk("", "stop")

    async def _collect(
        self, ctx: RequestContext, chunks: AsyncIterator[StreamChunk], *, forward: bool
    ) -> AsyncGenerator[StreamChunk, None]:
        """Gather the answer into ``ctx.generation``; with ``forward``, pass its text on as it comes."""
        parts: list[str] = []
        finish = "stop"
        try:
            async for chunk in chunks:
                parts.append(chunk.text)
                finish = chunk.finish_reason or finish
                if forward and chunk.text:
                    yield StreamChunk(chunk.text)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        text = "".join(parts)
        prompt = ctx.request.n_prompt_tokens if ctx.request else 0
        ctx.generation = Generation(text, prompt, ctx.backend.count_tokens(text) if text else 0, finish)

    async def _buffered(
        self, ctx: RequestContext, plan: StructuredPlan, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        async with contextlib.aclosing(self._collect(ctx, chunks, forward=False)) as gathering:
            async for _ in gathering:
                pass
        assert ctx.generation is not None
        await self._settle(ctx, plan)
        for chunk in replay(ctx.generation):
            yield chunk

    async def _settle(self, ctx: RequestContext, plan: StructuredPlan) -> None:
        final = ctx.generation
        assert final is not None
        gen = final
        prompt_tokens, completion_tokens = gen.prompt_tokens, gen.completion_tokens
        retries = self.retries(ctx.model)
        while True:
            verdict = judge(plan, gen.text, truncated=gen.finish_reason == "length")
            if verdict.ok:
                break
            plan.errors.append(verdict.error)
            if plan.reasks >= retries:
                self._fail(ctx, plan, verdict.error)
            plan.reasks += 1
            gen = await self._reask(ctx, plan, gen, verdict)
            prompt_tokens += gen.prompt_tokens
            completion_tokens += gen.completion_tokens
        plan.outcome = "reasked" if plan.reasks else "repaired" if verdict.repaired else "valid"
        final.text = verdict.text
        final.prompt_tokens, final.completion_tokens = prompt_tokens, completion_tokens
        if verdict.calls is not None:
            final.finish_reason = "tool_calls"
            final.tool_calls = openai_tool_calls(verdict.calls, ctx.trace_id[:24])
        else:
            final.finish_reason = "stop" if plan.content != "text" else gen.finish_reason
        attrs = plan.attributes()
        ctx.annotate(**attrs)
        ctx.attributes.update(attrs)

    def _fail(self, ctx: RequestContext, plan: StructuredPlan, error: str) -> None:
        plan.outcome = "failed"
        attrs = plan.attributes()
        ctx.annotate(**attrs)
        ctx.attributes.update(attrs)
        what = (
            "its tools"
            if plan.calls_required
            else f"the JSON schema {plan.schema_name!r}"
            if plan.content == "json_schema"
            else "the JSON object format"
            if plan.content == "json_object"
            else "its tools"
        )
        tries = f"after {plan.reasks} re-ask{'s' if plan.reasks != 1 else ''}"
        raise InvalidStructuredOutput(
            f"model {ctx.model!r} gave no answer that follows {what} ({tries}): {error}",
            extra={"structured": {"reasks": plan.reasks, "errors": plan.errors}},
        )

    async def _reask(
        self, ctx: RequestContext, plan: StructuredPlan, gen: Generation, verdict: Verdict
    ) -> Generation:
        req = ctx.request
        assert req is not None
        assert req.messages is not None
        wanted = (
            "the JSON list of tool calls"
            if plan.calls_required
            else "a JSON value"
            if not plan.calls_allowed
            else "either a JSON list of tool calls or your answer"
        )
        messages = list(req.messages)
        if gen.finish_reason == "length":
            feedback = (
                f"Your answer was cut off before it was complete. Reply again, shorter, with only {wanted}."
            )
        else:
            messages.append({"role": "assistant", "content": gen.text[:4000]})
            feedback = (
                f"That answer is not valid: {verdict.error}. Reply again with only {wanted}, corrected."
            )
        messages.append({"role": "user", "content": feedback})
        params = replace(plan.params, stop=list(plan.params.stop))
        again = GenerationRequest(
            "chat", params, messages=messages, grammar=req.grammar, extra=dict(req.extra)
        )
        try:
            ctx.backend.prepare(again)
        except ContextWindowExceeded:
            self._fail(ctx, plan, f"{verdict.error}; asking again does not fit in the context window")
        if gen.finish_reason == "length" and again.grammar and again.params.max_tokens:
            # A grammar whose every answer fits: the end-of-answer token counts too, hence the - 1.
            again.grammar, plan.grammar = self._grammar(grammar_key(plan), again.params.max_tokens - 1)
        return await ctx.backend.generate(again)
