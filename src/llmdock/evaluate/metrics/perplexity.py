"""Perplexity of the case's reference answer under a served model, in the context the target served.

The model is the one that answered the case (``value`` may name another), reached as every metric reaches
models (``env.backend``: the routed model, the same backend a gateway request gets). The context is the
conversation the target really asked (``Output.messages``: the target's prompt template rendered, its system
prompt, the input guards' redactions), rendered by that backend as its chat request would be (the model's chat
template, up to the assistant's turn); the reference is appended, and the text is sent as a text completion with ``echo``, ``logprobs`` and
``max_tokens: 0`` — the request ``POST /v1/completions`` serves — so the answer holds every token's
log-probability and nothing is generated. Perplexity is ``exp`` of the mean negative log-probability of the
reference's tokens only (a token that straddles the prompt's end counts with the reference).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from llmdock.backends.base import Backend, GenerationRequest, SamplingParams
from llmdock.backends.logprobs import Logprobs, perplexity, require_logprobs
from llmdock.errors import LlmdockError
from llmdock.evaluate.case import BaseMetric, Case, Check, MetricError, Output, Score

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv


def reference_logprobs(logprobs: Logprobs, prompt_chars: int) -> list[float]:
    """The log-probabilities of the tokens whose text reaches past the first ``prompt_chars`` characters of
    an echoed prompt (``logprobs.tokens`` with text offsets into it)."""
    tokens = logprobs.tokens
    ends = [t.offset for t in tokens[1:]] + [math.inf]
    return [
        t.logprob for t, end in zip(tokens, ends, strict=True) if end > prompt_chars and t.logprob is not None
    ]


class PerplexityMetric(BaseMetric):
    name = "perplexity"
    needs_reference = True
    needs_env = True
    what_it_uses = "models to score the reference"
    description = (
        "Perplexity of the case's `expected` under the model that answered it (`value` may name another "
        "served model), conditioned on the conversation the target served (its prompt template and system "
        "prompt rendered, through the model's chat template): exp of the mean negative log-probability of the "
        "reference's tokens, from `/v1/completions` with `echo`, `logprobs` and `max_tokens: 0` (≥ 1, lower "
        "is better). Passes when ≤ the threshold; with none, records it and passes. Needs a local runtime and "
        "a backend that gives log-probabilities (llama.cpp, an OpenAI-compatible upstream that returns them)."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        assert env is not None  # needs_env: BaseMetric refused None
        if check.value is not None and not isinstance(check.value, str):
            raise MetricError(f"{check.label}: `value` names the model to score with, not {check.value!r}")
        if check.threshold is not None and check.threshold < 1:
            raise MetricError(
                f"{check.label}: a perplexity is ≥ 1, so threshold {check.threshold} never passes"
            )
        self.models = env
        self.model = check.value
        if self.model is not None:
            self.backend(
                self.model
            )  # an unknown model, or one without log-probabilities: the suite's file:line

    def backend(self, model: str) -> Backend:
        from llmdock.structured.plan import route_backends

        try:
            backend = self.models.backend(model)
            require_logprobs(model, route_backends(backend), "logprobs")
        except LlmdockError as exc:
            raise MetricError(f"{self.check.label}: {exc.message}") from None
        return backend

    async def score(self, case: Case, output: Output) -> Score:
        reference = self.reference(case)
        model = self.model or str(output.served.get("model") or self.models.settings.default_model)
        if output.messages is None:
            raise MetricError(
                f"case {case.id} ({case.where}): the conversation its target served is not known here (a URL "
                "target's server renders its prompt template), so the reference has no context to score in"
            )
        backend = self.backend(model)
        try:
            await backend.ensure_started()
            chat = GenerationRequest("chat", SamplingParams(max_tokens=1), messages=list(output.messages))
            backend.prepare(chat)
            scored = GenerationRequest(
                "completion",
                SamplingParams(max_tokens=0, temperature=0),
                prompt=chat.prompt_text + reference,
                logprobs=0,
                echo=True,
            )
            backend.prepare(scored)
            generation = await backend.generate(scored)
        except LlmdockError as exc:
            raise MetricError(f"scoring case {case.id} with {model} failed: {exc.message}") from None
        if generation.logprobs is None:
            raise MetricError(f"{model} gave no log-probabilities for case {case.id} ({case.where})")
        values = reference_logprobs(generation.logprobs, len(chat.prompt_text))
        if not values:
            raise MetricError(f"case {case.id} ({case.where}): its `expected` is empty, nothing to score")
        value = perplexity(values)
        reason = f"{len(values)} reference tokens, mean log-probability {-math.log(value):.3f} ({model})"
        limit = self.check.threshold
        if limit is not None and value > limit:
            return Score(value, False, f"{value:.3g} > {limit:g}: {reason}")
        return Score(value, True, reason)


PERPLEXITY_METRICS = (PerplexityMetric,)
