"""Structured output through openai_compat against a real HTTP upstream that answers what the test scripts:
fields passed through, invalid answers repaired or re-asked, and a clear error when they stay invalid."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.gateway import create_app
from llmdock.store import get_trace, list_traces
from tests.conftest import Gateway
from tests.unit.test_gateway_api import sse_events
from tests.upstream import Upstream

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "Who wrote the first program?"}]
GOOD = {"content": '{"name": "Ada", "age": 36}'}
BAD = {"content": '{"name": "Ada", "age": "thirty-six"}'}


def call(arguments: str, name: str = "get_weather") -> dict[str, Any]:
    return {
        "tool_calls": [{"id": "up_1", "type": "function", "function": {"name": name, "arguments": arguments}}]
    }


@pytest.fixture
def scripted() -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def make(*replies: dict[str, Any]) -> Upstream:
        up = Upstream("scripted", "script", replies=list(replies))
        started.append(up)
        return up

    yield make
    for up in started:
        up.stop()


@pytest.fixture
def gateway_to(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> Callable[..., Any]:
    async def make(up: Upstream, **extra: Any) -> Gateway:
        model = ModelConfig(backend="openai_compat", base_url=up.url, upstream_model="m", **extra)
        settings = make_settings(models={"remote": model}, default_model="remote", default_embedding_model="")
        gw: Gateway = await gateway_factory(settings)
        return gw

    return make


async def chat(gw: Gateway, **body: Any) -> httpx.Response:
    return await gw.client.post("/v1/chat/completions", json={"model": "remote", "messages": ASK, **body})


def structured_attrs(gw: Gateway) -> dict[str, Any]:
    gw.flush_traces()
    assert gw.runtime.store is not None
    trace, _ = get_trace(gw.runtime.store, list_traces(gw.runtime.store, limit=1)[0].id)
    return {k: v for k, v in trace.attributes.items() if k.startswith("llmdock.structured.")}


async def test_the_fields_are_passed_through_and_the_prompt_left_alone(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted(GOOD)
    gw = await gateway_to(up)
    resp = await chat(
        gw, response_format=FORMAT, tools=[WEATHER], tool_choice="auto", parallel_tool_calls=False
    )
    assert resp.status_code == 200
    assert orjson.loads(resp.json()["choices"][0]["message"]["content"]) == {"name": "Ada", "age": 36}
    (body,) = up.bodies
    assert body["response_format"] == FORMAT
    assert body["tools"] == [WEATHER]
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is False
    assert body["messages"] == ASK  # the upstream enforces the format itself: no instructions added
    assert structured_attrs(gw)["llmdock.structured.grammar"] == "native"


async def test_an_invalid_answer_is_re_asked_with_its_error(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted(BAD, GOOD)
    gw = await gateway_to(up)
    resp = await chat(gw, response_format=FORMAT)
    assert resp.status_code == 200
    assert orjson.loads(resp.json()["choices"][0]["message"]["content"]) == {"name": "Ada", "age": 36}
    assert up.hits == 2
    reask = up.bodies[1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": BAD["content"]}
    assert "$.age: 'thirty-six' is not of type 'integer'" in reask[-1]["content"]
    assert resp.json()["usage"]["completion_tokens"] == 14  # both answers are paid for
    attrs = structured_attrs(gw)
    assert attrs["llmdock.structured.outcome"] == "reasked"
    assert attrs["llmdock.structured.reasks"] == 1


async def test_an_answer_that_stays_invalid_ends_in_a_clear_502(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted(BAD)
    gw = await gateway_to(up, structured_retries=2)
    resp = await chat(gw, response_format=FORMAT)
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "invalid_structured_output"
    assert err["message"].startswith("model 'remote' gave no answer that follows the JSON schema 'person'")
    assert "(after 2 re-asks): $.age" in err["message"]
    assert up.hits == 3
    assert structured_attrs(gw)["llmdock.structured.outcome"] == "failed"
    # streamed, the same failure is an HTTP error before any byte of the stream
    streamed = await chat(gw, response_format=FORMAT, stream=True)
    assert streamed.status_code == 502
    assert streamed.json()["error"]["code"] == "invalid_structured_output"


async def test_a_repairable_answer_costs_no_re_ask(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted({"content": '```json\n{"name": "Ada", "age": 36,}\n```'})
    gw = await gateway_to(up)
    resp = await chat(gw, response_format=FORMAT)
    assert orjson.loads(resp.json()["choices"][0]["message"]["content"]) == {"name": "Ada", "age": 36}
    assert up.hits == 1
    assert structured_attrs(gw)["llmdock.structured.outcome"] == "repaired"


async def test_an_answer_cut_off_at_max_tokens_is_asked_again_shorter(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted({"content": '{"name": "Ada", "ag', "finish_reason": "length"}, GOOD)
    gw = await gateway_to(up)
    resp = await chat(gw, response_format=FORMAT, max_tokens=8)
    assert resp.json()["choices"][0]["finish_reason"] == "stop"
    assert up.hits == 2
    reask = up.bodies[1]["messages"]
    assert "cut off" in reask[-1]["content"]
    assert reask[-2] == ASK[-1]  # the broken answer is not shown back
    assert up.bodies[1]["max_tokens"] == 8


async def test_tool_call_arguments_are_validated_and_re_asked(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted(call('{"town": "Paris"}'), call('{"city": "Paris"}'))
    gw = await gateway_to(up)
    resp = await chat(gw, tools=[WEATHER], tool_choice="required")
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert "$[0].arguments: 'city' is a required property" in up.bodies[1]["messages"][-1]["content"]


async def test_streamed_tool_calls_from_upstream_are_validated_then_sent_as_deltas(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted(call("{'city': 'Oslo'"))  # repairable arguments, streamed by the upstream in pieces
    gw = await gateway_to(up)
    resp = await chat(gw, tools=[WEATHER], stream=True)
    events = [e for e in sse_events(resp.text) if e != "[DONE]"]
    deltas = [e["choices"][0]["delta"] for e in events]
    args = "".join(d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if d.get("tool_calls"))
    assert orjson.loads(args) == {"city": "Oslo"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert up.bodies[0]["stream"] is True


async def test_text_an_upstream_sends_beside_its_calls_is_dropped_streamed_or_not(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted({"content": "Let me check.", **call('{"city": "Oslo"}')})
    gw = await gateway_to(up)
    plain = (await chat(gw, tools=[WEATHER])).json()["choices"][0]
    assert plain["message"]["content"] is None
    assert plain["message"]["tool_calls"][0]["function"]["arguments"] == '{"city":"Oslo"}'
    streamed = await chat(gw, tools=[WEATHER], stream=True)
    deltas = [e["choices"][0]["delta"] for e in sse_events(streamed.text) if e != "[DONE]"]
    assert not any(d.get("content") for d in deltas)
    assert any(d.get("tool_calls") for d in deltas)


async def test_the_openai_sdk_parses_tool_calls_and_formats(
    scripted: Callable[..., Upstream], gateway_to: Callable[..., Any]
) -> None:
    up = scripted(call('{"city": "Lima"}'), GOOD)
    gw = await gateway_to(up)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gw.runtime)), base_url="http://gw/v1"
    )
    client = openai.AsyncOpenAI(base_url="http://gw/v1", api_key="unused", http_client=http, max_retries=0)
    resp = await client.chat.completions.create(model="remote", messages=ASK, tools=[WEATHER])  # type: ignore[arg-type,list-item]
    (tool_call,) = resp.choices[0].message.tool_calls or []
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    assert orjson.loads(tool_call.function.arguments) == {"city": "Lima"}  # type: ignore[union-attr]
    resp = await client.chat.completions.create(model="remote", messages=ASK, response_format=FORMAT)  # type: ignore[arg-type]
    assert orjson.loads(resp.choices[0].message.content or "") == {"name": "Ada", "age": 36}
    await http.aclose()
