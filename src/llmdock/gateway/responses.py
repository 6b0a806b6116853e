"""OpenAI-shaped response bodies: a chat or text completion, embeddings, a model card."""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from llmdock.backends.base import Generation, GenerationRequest
from llmdock.errors import InvalidRequest
from llmdock.gateway.schemas import EmbeddingBody
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.telemetry import token_counts
from llmdock.runtime import Runtime


def usage(ctx: RequestContext) -> dict[str, int]:
    prompt, completion = token_counts(ctx)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(ctx: RequestContext) -> dict[str, Any]:
    """The answer of a finished chat or text completion."""
    gen = ctx.generation
    assert gen is not None
    assert ctx.request is not None
    req = ctx.request
    op = req.op
    if req.logprobs is not None:
        check_logprobs(req, gen)
    choice = op.response_choice(gen)
    if req.echo:  # text completions: the prompt, then the answer
        choice["text"] = req.prompt_text + choice["text"]
    body = {
        "id": op.id_prefix + ctx.trace_id,
        "object": op.response_object,
        "created": int(time.time()),
        "model": ctx.model,
        "choices": [choice],
        "usage": usage(ctx),
    }
    if "llmdock.ground.citations" in ctx.attributes:  # the ground stage's sources (docs/rag.md)
        body["citations"] = ctx.attributes["llmdock.ground.citations"]
    return body


def check_logprobs(req: GenerationRequest, gen: Generation) -> None:
    """Log-probabilities were asked: refuse to answer without them, or with ones of another text."""
    if gen.logprobs is None:
        raise InvalidRequest("the model gave no log-probabilities for this answer", param="logprobs")
    if gen.logprobs.answer != gen.text:
        raise InvalidRequest(
            "the answer was changed after it was generated (a guard redacted it, or structured output "
            "repaired it), so its log-probabilities do not describe it: leave out logprobs",
            param="logprobs",
        )


def embedding_body(ctx: RequestContext, body: EmbeddingBody) -> dict[str, Any]:
    """The vectors (cut to ``dimensions``, as floats or base64) and the tokens they took."""
    assert ctx.embedding is not None
    data = []
    for i, vector in enumerate(ctx.embedding.vectors):
        if body.dimensions:
            vector = vector[: body.dimensions]
        item: Any = vector
        if body.encoding_format == "base64":
            item = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": i, "embedding": item})
    tokens = ctx.embedding.prompt_tokens
    return {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_card(runtime: Runtime, name: str) -> dict[str, Any]:
    info = runtime.backends[name].info()
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "llmdock",
        **{k: v for k, v in info.items() if k != "id"},
    }
