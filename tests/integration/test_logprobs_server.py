"""Log-probabilities over real HTTP: the official openai SDK against ``llmdock serve`` on SmolLM2, and the
OpenAI-compatible backend passing them through from that server as its upstream."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.config import load_settings
from llmdock.plugins import load_plugins
from llmdock.runtime import build_backends
from tests.integration.conftest import Server

pytestmark = [pytest.mark.model, pytest.mark.server]

PROMPT = "The capital of France is Paris."
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_an_echoed_prompt_with_max_tokens_0_comes_back_scored(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="smollm2", prompt=PROMPT, echo=True, logprobs=1, max_tokens=0)
    choice = resp.choices[0]
    assert choice.text == PROMPT
    lp = choice.logprobs
    assert lp is not None
    assert lp.tokens is not None
    assert lp.token_logprobs is not None
    assert lp.top_logprobs is not None
    assert lp.text_offset is not None
    assert "".join(lp.tokens) == PROMPT
    assert lp.token_logprobs[0] is None
    assert lp.top_logprobs[0] is None
    assert all(v is not None and v <= 0 for v in lp.token_logprobs[1:])
    assert all(len(top) == 1 for top in lp.top_logprobs[1:])
    assert [PROMPT[o : o + len(t)] for o, t in zip(lp.text_offset, lp.tokens, strict=True)] == lp.tokens
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 0
    again = client.completions.create(model="smollm2", prompt=PROMPT, echo=True, logprobs=1, max_tokens=0)
    assert again.choices[0].logprobs is not None
    assert again.choices[0].logprobs.token_logprobs == lp.token_logprobs


def test_chat_logprobs_give_each_token_its_top_alternatives(client: openai.OpenAI) -> None:
    ask = {"model": "smollm2", "messages": QUESTION, "max_tokens": 8, "temperature": 0, "logprobs": True}
    resp = client.chat.completions.create(**ask, top_logprobs=3)  # type: ignore[call-overload]
    choice = resp.choices[0]
    assert choice.logprobs is not None
    content = choice.logprobs.content
    assert content is not None
    assert "".join(t.token for t in content) == choice.message.content
    for t in content:
        assert len(t.top_logprobs) == 3
        assert t.logprob <= 0
        assert (t.token, t.logprob) == (t.top_logprobs[0].token, t.top_logprobs[0].logprob)  # greedy
        assert bytes(t.bytes or []) == t.token.encode()
    stream = client.chat.completions.create(**ask, top_logprobs=3, stream=True)  # type: ignore[call-overload]
    streamed = [
        t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content or []
    ]
    assert [t.token for t in streamed] == [t.token for t in content]


def test_a_model_without_logprobs_is_refused_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="all-minilm-l6-v2",
            messages=QUESTION,  # type: ignore[arg-type]
            logprobs=True,
        )
    assert "logprobs" in str(info.value)


async def test_an_upstream_passes_its_logprobs_through(
    server: Server, client: openai.OpenAI, tmp_path: Path
) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        f"models:\n  remote:\n    backend: openai_compat\n    base_url: {server.v1}\n    upstream_model: smollm2\n"
    )
    backend = build_backends(load_settings(cfg), load_plugins())["remote"].deployments[0].backend
    try:
        req = GenerationRequest(
            "completion", SamplingParams(max_tokens=0), prompt=PROMPT, logprobs=2, echo=True
        )
        backend.prepare(req)
        gen = await backend.generate(req)
        direct = client.completions.create(
            model="smollm2", prompt=PROMPT, echo=True, logprobs=2, max_tokens=0
        )
        assert gen.text == ""  # the echoed prompt is not part of the answer
        assert gen.logprobs is not None
        assert gen.logprobs.n_prompt == len(gen.logprobs.tokens)
        assert direct.choices[0].logprobs is not None
        assert [t.logprob for t in gen.logprobs.tokens] == direct.choices[0].logprobs.token_logprobs
        assert [dict((a.token, a.logprob) for a in t.top) or None for t in gen.logprobs.tokens][1:] == (
            direct.choices[0].logprobs.top_logprobs or []
        )[1:]
        chat = GenerationRequest(
            "chat", SamplingParams(max_tokens=6, temperature=0), messages=QUESTION, logprobs=1
        )
        backend.prepare(chat)
        answer = await backend.generate(chat)
        assert answer.logprobs is not None
        assert "".join(t.token for t in answer.logprobs.tokens) == answer.text
        chunks = [c async for c in backend.stream(chat)]
        assert [t.token for c in chunks for t in c.logprobs or []] == [
            t.token for t in answer.logprobs.tokens
        ]
    finally:
        await backend.close()
