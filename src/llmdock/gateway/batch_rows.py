"""Batch rows answered by the gateway's own pipeline, in process: the :class:`RowAnswerer` of
``llmdock batch run`` and of the Batch API.

A row's body is parsed by the same model as ``/v1/chat/completions`` (or ``/v1/completions``), becomes its
context through the same function (prompt template, key scope, structured output, log-probabilities),
runs the one pipeline (guards, cache, routing, trace) and is answered with the same JSON body; an error is
the same OpenAI error body with the status the route would have answered.
"""

from __future__ import annotations

from typing import Any, cast

import orjson

from llmdock.auth.service import Principal
from llmdock.errors import LlmdockError, NotFound
from llmdock.gateway.http import parse_body
from llmdock.gateway.inference import GenerationBody, context_of, run_whole
from llmdock.gateway.responses import completion_body
from llmdock.gateway.schemas import ChatCompletionBody, CompletionBody
from llmdock.jobs.batch import RowAnswer
from llmdock.runtime import Runtime

BODIES: dict[str, type[ChatCompletionBody] | type[CompletionBody]] = {
    "/v1/chat/completions": ChatCompletionBody,
    "/v1/completions": CompletionBody,
}


class PipelineRows:
    """Answers rows for ``principal`` (None: the operator, as with auth off), each traced with ``source``."""

    def __init__(self, runtime: Runtime, principal: Principal | None = None, namespace: str = "") -> None:
        self.runtime = runtime
        self.principal = principal
        self.namespace = namespace or (principal.user_id if principal else "")

    async def answer(self, url: str, body: dict[str, Any]) -> RowAnswer:
        ctx = None
        try:
            body_type = BODIES.get(url)
            if body_type is None:
                raise NotFound(f"url {url!r} is not a batch endpoint ({', '.join(BODIES)})", param="url")
            parsed = cast(GenerationBody, parse_body(orjson.dumps(body), body_type))
            parsed.stream = False  # a batch row is answered whole
            ctx = await context_of(self.runtime, parsed, self.principal, self.namespace)
            ctx.source = "batch"
            await run_whole(self.runtime, ctx)
            return RowAnswer(200, completion_body(ctx), ctx.trace_id)
        except LlmdockError as exc:
            return RowAnswer(exc.status, exc.to_body(), ctx.trace_id if ctx is not None else "")
