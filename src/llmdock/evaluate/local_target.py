"""The in-process target: a case through the same pipeline object a gateway request runs through (prompt
template, guards, structured output, the routed backend). Its own module so that a run whose targets are all
URLs never imports the pipeline."""

from __future__ import annotations

import time

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.errors import InvalidRequest, LlmdockError
from llmdock.evaluate.case import Case, Output
from llmdock.evaluate.suite import TargetSpec
from llmdock.evaluate.targets import Serving, messages_of, parse_prompt_ref, sampling
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.telemetry import request_cost, token_counts
from llmdock.prompts import PromptCall


class LocalTarget:
    """The served pipeline, in this process."""

    def __init__(self, spec: TargetSpec, serving: Serving) -> None:
        self.spec = spec
        self.label = spec.label
        self.serving = serving
        names = spec.pipeline or [s for s in serving.settings.pipeline if spec.cache or s != "cache"]
        self.pipeline = serving.pipeline_with(names)

    async def _prompt(self, case: Case) -> PromptCall | None:
        if self.spec.prompt is None:
            return None
        if self.serving.prompts is None:
            raise InvalidRequest("prompt templates need the store (trace.enabled)")
        name, version, label = parse_prompt_ref(self.spec.prompt)
        found = await self.serving.prompts.resolve(name, version, label)
        return PromptCall(found, dict(case.vars), label)

    async def answer(self, case: Case, seed: int, max_tokens: int) -> Output:
        t0 = time.perf_counter()
        try:
            call = await self._prompt(case)
            model = self.spec.model or (call.prompt.config.get("model") if call else None)
            if not model:
                raise InvalidRequest(
                    f"prompt template {self.spec.prompt!r} names no model: give the target one"
                )
            params = SamplingParams(**sampling(self.spec, seed, max_tokens))
            request = GenerationRequest("chat", params, messages=messages_of(case, self.spec.system))
            ctx = RequestContext("chat", model, self.serving.backend(model), request=request, source="eval")
            ctx.prompt = call
            ctx = await self.pipeline.run(ctx)
        except LlmdockError as exc:
            return Output(latency_ms=(time.perf_counter() - t0) * 1000, error=exc.one_line())
        prompt_tokens, completion_tokens = token_counts(ctx)
        served = {
            k: v
            for k, v in ctx.attributes.items()
            if k.startswith(("llmdock.prompt", "llmdock.served", "llmdock.deployment"))
        }
        return Output(
            text=ctx.output_text,
            latency_ms=(time.perf_counter() - t0) * 1000,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=request_cost(ctx, prompt_tokens, completion_tokens),
            trace_id=ctx.trace_id,
            served={"model": model, **served},
            messages=list(ctx.request.messages) if ctx.request and ctx.request.messages else None,
        )

    async def close(self) -> None:
        return None
