"""LLM-as-judge: ``llm-rubric`` (promptfoo's name), a G-Eval-style rubric graded by a configured model.

``value`` is the rubric, or a mapping ``{rubric, model (or provider), verdict: score|pass, prompt, max_tokens,
cache}``. The judge is any model the runtime routes (``env.backend(model)``; default: the judge template's
configured model, else ``default_model``), asked at temperature 0 for a JSON verdict ``{"reason", "score"}``
(0..1) or ``{"reason", "pass"}``.

The verdict is valid JSON by construction where the judge can guarantee it, as the structured stage would
ask: an upstream that implements ``response_format`` gets a ``json_schema`` one; a backend that constrains
decoding (the embedded llama.cpp model) gets the schema's GBNF grammar (:mod:`llmdock.structured.grammar`);
any other judge is asked in the prompt alone. Either way the answer is then checked by the structured stage's
own judge (strict parse, JSON-schema validation, ``json-repair`` for a near miss); an answer that is still
not a verdict scores 0 with the reason and the answer's start. (The structured *stage* itself is not driven
from here: it works on a gateway request context, and a metric needs one call, not a pipeline.)

Judge answers are cached by content hash (:mod:`llmdock.evaluate.metrics.judge_cache`); the prompt is the
stored ``llmdock-judge`` template when there is one (:mod:`llmdock.evaluate.metrics.judge_prompt`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from llmdock.backends.base import Backend, GenerationRequest, SamplingParams
from llmdock.errors import LlmdockError
from llmdock.evaluate.case import BaseMetric, Case, Check, MetricError, Output, Score
from llmdock.evaluate.metrics.base import clip
from llmdock.evaluate.metrics.judge_cache import JudgeCache, cache_key
from llmdock.evaluate.metrics.judge_prompt import (
    ACCEPTED,
    PROMPT_NAME,
    SCHEMAS,
    JudgePrompt,
    VerdictForm,
    load_prompt,
)

if TYPE_CHECKING:  # the structured stage's pieces are imported when a judge is built, not at registration
    from llmdock.pipeline.env import StageEnv

PASS_AT = 0.5
Enforcement = Literal["response_format", "grammar", "prompt"]


class JudgeSpec(BaseModel):
    """An ``llm-rubric`` check's ``value`` when it is a mapping."""

    model_config = ConfigDict(extra="forbid")

    rubric: str = Field(min_length=1)
    model: str = Field(
        default="", description="the judge model (default: the template's, else default_model)"
    )
    provider: str = Field(default="", description="promptfoo's word for the same thing")
    verdict: VerdictForm = "score"
    prompt: str = Field(default=PROMPT_NAME, min_length=1, description="the stored judge template")
    max_tokens: int = Field(default=256, gt=0, le=4096)
    cache: bool = True


def _spec(check: Check) -> JudgeSpec:
    value: Any = check.value
    if isinstance(value, str):
        value = {"rubric": value}
    if not isinstance(value, dict):
        raise MetricError(f"{check.label}: `value` is the rubric (text), or {{rubric, model, verdict…}}")
    try:
        return JudgeSpec.model_validate(value)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MetricError(f"{check.label}: value.{where}: {first['msg']}") from None


@functools.cache
def _grammar(form: VerdictForm) -> str:
    from llmdock.structured.grammar import GrammarUnavailable, json_grammar, schema_grammar

    try:
        return schema_grammar(SCHEMAS[form])
    except GrammarUnavailable:
        return json_grammar("object")


def enforcement_of(backend: Backend) -> Enforcement:
    """How a JSON answer can be made valid by construction on this backend (its every deployment)."""
    from llmdock.structured.plan import route_backends

    deployments = route_backends(backend)
    if all(type(b).native_structured_output for b in deployments):
        return "response_format"
    if any(type(b).enforces_grammar for b in deployments):
        return "grammar"
    return "prompt"


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    truncated: bool


async def ask_json(
    backend: Backend,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    params: SamplingParams,
    enforcement: Enforcement,
    grammar: str | None = None,
    name: str = "answer",
) -> Answer:
    """One chat call asking for a JSON answer of ``schema``: as ``response_format`` where the upstream
    implements it, constrained by ``grammar`` (the schema's GBNF) where the backend decodes by grammar, else
    by the prompt alone. The answer is not parsed here (``structured.judge.judge`` checks it). Raises the
    backend's LlmdockError."""
    req = GenerationRequest("chat", params, messages=messages)
    if enforcement == "response_format":
        req.extra["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        }
    elif enforcement == "grammar":
        from llmdock.structured.grammar import json_grammar

        req.grammar = grammar or json_grammar("object")
    await backend.ensure_started()
    backend.prepare(req)
    generation = await backend.generate(req)
    return Answer(generation.text, generation.finish_reason == "length")


class LlmRubricMetric(BaseMetric):
    name = "llm-rubric"
    needs_env = True
    what_it_uses = "models for its judge"
    description = (
        "LLM-as-judge (G-Eval style): a judge model grades the answer against the rubric in `value` (or "
        "`value: {rubric, model, verdict: score|pass}`) and returns a JSON verdict with a reason; the value "
        "is its score 0..1 (pass/fail verdicts: 1 or 0). Passes at 0.5 unless a threshold is set. The judge "
        "prompt is the stored `llmdock-judge` template if there is one (its version is in the reason); judge "
        "answers are cached by content hash under <home>/judge-cache. Needs a local runtime."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        from llmdock.structured.plan import CompiledSchema, StructuredPlan
        from llmdock.structured.schemas import SchemaValidator

        super().__init__(check, env)
        assert env is not None  # needs_env: BaseMetric refused None
        self.spec = _spec(check)
        try:
            self.prompt: JudgePrompt = load_prompt(env.store, self.spec.prompt)
        except LlmdockError as exc:
            raise MetricError(f"{check.label}: judge prompt: {exc.message}") from None
        config = self.prompt.config
        self.model = (
            self.spec.model or self.spec.provider or config.get("model") or env.settings.default_model
        )
        try:
            self.backend = env.backend(self.model)
        except LlmdockError as exc:
            raise MetricError(f"{check.label}: judge model: {exc.message}") from None
        self.form: VerdictForm = self.spec.verdict
        self.enforcement = enforcement_of(self.backend)
        self.params = {
            "max_tokens": self.spec.max_tokens,
            "temperature": config.get("temperature", 0.0),
            "top_p": config.get("top_p"),
            "seed": config.get("seed", 0),
        }
        self.plan = StructuredPlan(
            content="json_schema", content_schema=CompiledSchema(ACCEPTED, SchemaValidator(ACCEPTED), [])
        )
        self.cache = JudgeCache(env.settings.home / "judge-cache") if self.spec.cache else None

    def variables(self, case: Case, output: Output) -> dict[str, Any]:
        from llmdock.pipeline.stages import flatten_content

        question = case.input
        if question is None:
            question = "\n".join(
                f"{m.get('role')}: {flatten_content(m.get('content'))}" for m in case.messages or []
            )
        return {
            "rubric": self.spec.rubric,
            "input": question,
            "output": output.text,
            "expected": case.expected or "",
            "context": case.context or "",
            "vars": case.vars,
        }

    async def ask(self, messages: list[dict[str, Any]]) -> Answer:
        """One call of the judge model, asked for the verdict's schema as well as the backend can enforce it."""
        params = SamplingParams(**{k: v for k, v in self.params.items() if v is not None})
        grammar = _grammar(self.form) if self.enforcement == "grammar" else None
        try:
            return await ask_json(
                self.backend, messages, SCHEMAS[self.form], params, self.enforcement, grammar, "judge_verdict"
            )
        except LlmdockError as exc:
            raise MetricError(f"the judge ({self.model}) failed: {exc.message}") from None

    async def answer(self, messages: list[dict[str, Any]]) -> Answer:
        """The judge's answer, from the cache when this exact call was made before."""
        if self.cache is None:
            return await self.ask(messages)
        key = cache_key(self.model, messages, self.params, SCHEMAS[self.form])
        hit = await self.cache.get(key)
        if hit is not None:
            stored = orjson.loads(hit)
            return Answer(stored["text"], stored["truncated"])
        found = await self.ask(messages)
        await self.cache.put(
            key, self.model, orjson.dumps({"text": found.text, "truncated": found.truncated}).decode()
        )
        return found

    async def score(self, case: Case, output: Output) -> Score:
        from llmdock.structured.judge import judge

        try:
            messages = self.prompt.messages(self.variables(case, output), self.form)
        except LlmdockError as exc:
            raise MetricError(f"judge prompt {self.prompt.version}: {exc.message}") from None
        found = await self.answer(messages)
        tag = f"[judge {self.model}, judge prompt {self.prompt.version}]"
        verdict = judge(self.plan, found.text, truncated=found.truncated)
        if not verdict.ok:
            return Score(
                0.0, False, f"the judge's answer is not a verdict ({verdict.error}): {clip(found.text)} {tag}"
            )
        value = orjson.loads(verdict.text)
        score = float(value["score"]) if "score" in value else float(bool(value["pass"]))
        reason = str(value.get("reason", "")).strip()
        return Score(score, self.passes(score, PASS_AT), f"{reason} {tag}".lstrip())


JUDGE_METRICS = (LlmRubricMetric,)
