"""Template features: few-shot examples rendered into messages, and reasoning mode (asked for, split off the
answer, kept in the trace), plain and streamed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from llmdock.backends.base import StreamChunk
from llmdock.config import ModelConfig, Settings
from llmdock.errors import InvalidRequest
from llmdock.prompts.reasoning import INSTRUCTION, StreamSplitter, split
from llmdock.store.audit import Actor
from llmdock.store.traces import get_trace
from tests.conftest import Gateway

ADMIN = Actor("test", "pytest")
THOUGHT = "<reasoning>Two apples plus two apples.\nThat is four.</reasoning>\n\nYou have four apples."
MATH = [
    {"role": "system", "content": "You count {{ thing }}."},
    {"role": "user", "content": "{{ question }}"},
]
EXAMPLES = [{"user": "One apple and one apple?", "assistant": "Two apples."}]


@pytest.mark.parametrize(
    ("text", "reasoning", "answer"),
    [
        (THOUGHT, "Two apples plus two apples.\nThat is four.", "You have four apples."),
        ("  <think>hmm</think>Four.", "hmm", "Four."),
        ("Four, no thinking.", "", "Four, no thinking."),
        ("<reasoning>cut off before the end", "cut off before the end", ""),
    ],
)
async def test_split_whole_and_streamed_in_any_chunking(text: str, reasoning: str, answer: str) -> None:
    assert split(text) == (reasoning, answer if reasoning or answer else text)
    for size in (1, 3, 7, len(text)):

        async def chunks(size: int = size) -> AsyncIterator[StreamChunk]:
            pieces = [text[i : i + size] for i in range(0, len(text), size)]
            for n, piece in enumerate(pieces):
                yield StreamChunk(piece, finish_reason="stop" if n == len(pieces) - 1 else None)

        splitter = StreamSplitter()
        sent = [c.text async for c in splitter.wrap(chunks())]
        assert "".join(sent) == answer, size
        assert splitter.reasoning == reasoning
        assert not any("<" in s and ("reasoning" in s or "think" in s) for s in sent)


@pytest.fixture
async def gw(gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]) -> Gateway:
    models = {"thinker": ModelConfig(backend="fake", reply=THOUGHT)}
    g: Gateway = await gateway_factory(make_settings(models=models, default_model="thinker"))
    assert g.runtime.prompts is not None
    g.runtime.prompts.registry.create(
        "math",
        ADMIN,
        kind="chat",
        template=MATH,
        config={"model": "thinker", "reasoning": True, "examples": EXAMPLES, "max_tokens": 60},
    )
    return g


def body(**extra: Any) -> dict[str, Any]:
    variables = {"thing": "apples", "question": "Two apples and two apples?"}
    return {"messages": [], "prompt_id": "math", "prompt_variables": variables, **extra}


async def test_reasoning_is_split_off_and_kept_in_the_trace(gw: Gateway) -> None:
    resp = await gw.client.post("/v1/chat/completions", json=body())
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "You have four apples."
    gw.flush_traces()
    assert gw.runtime.store is not None
    trace, spans = get_trace(gw.runtime.store, resp.headers["x-llmdock-trace-id"])
    assert trace.output == "You have four apples."
    assert trace.input["reasoning"] == "Two apples plus two apples.\nThat is four."
    sent = trace.input["messages"]
    assert sent[0] == {"role": "system", "content": f"You count apples.\n\n{INSTRUCTION}"}
    assert sent[1:3] == [
        {"role": "user", "content": "One apple and one apple?"},
        {"role": "assistant", "content": "Two apples."},
    ]
    assert sent[3] == {"role": "user", "content": "Two apples and two apples?"}
    generate = next(s for s in spans if s.name == "generate")
    assert generate.attributes["llmdock.reasoning_chars"] == len(trace.input["reasoning"])


async def test_a_stream_never_sends_the_reasoning(gw: Gateway) -> None:
    resp = await gw.client.post("/v1/chat/completions", json=body(stream=True))
    assert resp.status_code == 200, resp.text
    deltas = []
    for line in resp.text.splitlines():
        if line.startswith("data: {"):
            choice = json.loads(line[6:])["choices"]
            if choice:
                deltas.append(choice[0]["delta"].get("content") or "")
    assert "".join(deltas) == "You have four apples."
    gw.flush_traces()
    assert gw.runtime.store is not None
    trace, _ = get_trace(gw.runtime.store, resp.headers["x-llmdock-trace-id"])
    assert trace.output == "You have four apples."
    assert trace.input["reasoning"].endswith("That is four.")


async def test_bad_feature_settings_say_what_is_wrong(gw: Gateway) -> None:
    assert gw.runtime.prompts is not None
    reg = gw.runtime.prompts.registry
    with pytest.raises(InvalidRequest, match="need a chat template"):
        reg.create("t", ADMIN, kind="text", template="Q: {{ q }}", config={"reasoning": True})
    with pytest.raises(InvalidRequest) as bad:
        reg.create("c", ADMIN, kind="chat", template=MATH, config={"examples": [{"user": "hi"}]})
    assert bad.value.param == "config.examples.0.assistant"
    schema = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}
    refused = await gw.client.post("/v1/chat/completions", json=body(response_format=schema))
    assert refused.status_code == 400
    assert "reasoning mode" in refused.json()["error"]["message"]
