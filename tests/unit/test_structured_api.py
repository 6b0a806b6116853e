"""response_format and tools through the gateway on the fake backend: the request fields, the mapping to
the backend (prompt, grammar), answers and their errors, streams, traces."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.store import get_trace, list_traces
from tests.conftest import Gateway
from tests.unit.test_gateway_api import sse_events

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "Who?"}]
MakeGateway = Callable[[Settings], Any]


async def replying(
    factory: MakeGateway, make_settings: Callable[..., Settings], reply: str, **extra: Any
) -> Gateway:
    """A gateway whose model always answers ``reply``."""
    models = {"m": ModelConfig(backend="fake", reply=reply, **extra)}
    gw: Gateway = await factory(make_settings(models=models, default_model="m", default_embedding_model=""))
    return gw


async def chat(gw: Gateway, **body: Any) -> Any:
    return await gw.client.post("/v1/chat/completions", json={"model": "m", "messages": ASK, **body})


async def trace_of(gw: Gateway, resp: Any) -> Any:
    gw.flush_traces()
    assert gw.runtime.store is not None
    # error bodies carry no trace id header: those tests send one request, so the newest trace is theirs
    trace_id = resp.headers.get("x-llmdock-trace-id") or list_traces(gw.runtime.store, limit=1)[0].id
    return get_trace(gw.runtime.store, trace_id)


# --- bad input: 400/422 naming the field -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "p", "schema": {"type": "nope"}},
                }
            },
            400,
            "response_format.json_schema.schema.type",
        ),
        ({"response_format": {"type": "json_schema"}}, 422, "response_format"),
        ({"response_format": {"type": "yaml"}}, 422, "response_format.type"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}},
            422,
            "response_format.json_schema.name",
        ),
        (
            {"tools": [{**WEATHER_TOOL, "function": {"name": "f", "parameters": {"required": 3}}}]},
            400,
            "tools.0.function.parameters.required",
        ),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, 400, "tools.1.function.name"),
        ({"tool_choice": "required"}, 400, "tool_choice"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "function": {"name": "launch"}}},
            400,
            "tool_choice.function.name",
        ),
    ],
)
async def test_bad_structured_fields_are_refused_naming_the_field(
    gateway: Gateway, body: dict[str, Any], status: int, field: str
) -> None:
    resp = await gateway.client.post("/v1/chat/completions", json={"model": "fake", "messages": ASK, **body})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["param"] == field
    assert err["message"].startswith(field + ":")


async def test_without_the_structured_stage_a_format_is_refused(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(make_settings(pipeline=["preprocess", "generate", "postprocess"]))
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": ASK, "response_format": {"type": "json_object"}},
    )
    assert resp.status_code == 400
    assert "'structured' stage" in resp.json()["error"]["message"]


# --- answers ---------------------------------------------------------------------------------------------


async def test_a_valid_answer_comes_back_as_json_content(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, '{"name": "Ada", "age": 36}')
    resp = await chat(gw, response_format=SCHEMA_FORMAT)
    assert resp.status_code == 200
    choice = resp.json()["choices"][0]
    assert orjson.loads(choice["message"]["content"]) == {"name": "Ada", "age": 36}
    assert choice["finish_reason"] == "stop"
    trace, spans = await trace_of(gw, resp)
    assert [s.name for s in spans][-2:] == ["structured", "postprocess"]
    assert spans[-2].attributes["llmdock.structured.outcome"] == "valid"
    assert spans[-2].attributes["llmdock.structured.grammar"] == "schema"
    # the fake backend is no native OpenAI server: the schema went into the system message
    system = trace.input["messages"][0]
    assert system["role"] == "system"
    assert '"required":["name","age"]' in system["content"]


async def test_a_repairable_answer_is_repaired(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, 'Here you go: {"name": "Ada", "age": "36",}')
    resp = await chat(gw, response_format=SCHEMA_FORMAT)
    assert orjson.loads(resp.json()["choices"][0]["message"]["content"]) == {"name": "Ada", "age": 36}
    trace, _ = await trace_of(gw, resp)
    assert trace.attributes["llmdock.structured.outcome"] == "repaired"


async def test_an_answer_that_stays_invalid_is_a_502_after_the_re_asks(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, "I cannot do JSON", structured_retries=1)
    resp = await chat(gw, response_format={"type": "json_object"})
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == "invalid_structured_output"
    assert "(after 1 re-ask)" in err["message"]
    assert err["structured"]["reasks"] == 1
    trace, spans = await trace_of(gw, resp)
    assert trace.status == "error"
    assert spans[-1].name == "structured"
    assert spans[-1].attributes["llmdock.structured.outcome"] == "failed"
    assert len(spans[-1].attributes["llmdock.structured.errors"]) == 2


async def test_a_stream_is_judged_before_its_first_byte(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, "not json at all", structured_retries=0)
    resp = await chat(gw, response_format={"type": "json_object"}, stream=True)
    assert resp.status_code == 502  # a real HTTP error, not a broken stream
    assert resp.json()["error"]["code"] == "invalid_structured_output"

    good = await replying(gateway_factory, make_settings, '{"name": "Ada", "age": 36}')
    resp = await chat(good, response_format=SCHEMA_FORMAT, stream=True)
    events = [e for e in sse_events(resp.text) if e != "[DONE]"]
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert orjson.loads(text) == {"name": "Ada", "age": 36}
    assert events[-1]["choices"][0]["finish_reason"] == "stop"


CALL = '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'


async def test_a_tool_call_comes_back_as_tool_calls(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, CALL)
    resp = await chat(gw, tools=[WEATHER_TOOL], tool_choice="required")
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    trace, spans = await trace_of(gw, resp)
    assert trace.output == '[{"name":"get_weather","arguments":{"city":"Paris"}}]'
    assert spans[-2].attributes["llmdock.structured.mode"] == "tools:required"
    assert "get_weather" in trace.input["messages"][0]["content"]


async def test_a_streamed_tool_call_arrives_as_openai_deltas(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, CALL)
    choice = {"type": "function", "function": {"name": "get_weather"}}
    resp = await chat(gw, tools=[WEATHER_TOOL], tool_choice=choice, stream=True)
    events = [e for e in sse_events(resp.text) if e != "[DONE]"]
    deltas = [e["choices"][0]["delta"] for e in events]
    assert "content" not in deltas[1]
    head = deltas[1]["tool_calls"][0]
    assert head["function"]["name"] == "get_weather"
    assert head["id"].startswith("call_")
    args = "".join(d["tool_calls"][0]["function"]["arguments"] for d in deltas[1:] if d.get("tool_calls"))
    assert orjson.loads(args) == {"city": "Paris"}
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_auto_lets_the_model_answer_in_text(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, "No tool needed.")
    resp = await chat(gw, tools=[WEATHER_TOOL])
    choice = resp.json()["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "No tool needed."}
    trace, spans = await trace_of(gw, resp)
    assert spans[-2].attributes["llmdock.structured.grammar"] == "tools+text"


async def test_earlier_tool_calls_are_written_as_text_for_a_model_without_tools(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, "It is sunny.")
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    messages = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"},
    ]
    resp = await gw.client.post(
        "/v1/chat/completions", json={"model": "m", "messages": messages, "tools": [WEATHER_TOOL]}
    )
    assert resp.json()["choices"][0]["message"]["content"] == "It is sunny."
    trace, _ = await trace_of(gw, resp)
    assistant = trace.input["messages"][2]
    assert assistant["content"] == '[{"name":"get_weather","arguments":{"city":"Paris"}}]'
    assert "tool_calls" not in assistant


async def test_the_exact_cache_keeps_formats_apart(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, '{"name": "Ada", "age": 36}')
    plain = await chat(gw, temperature=0)
    structured = await chat(gw, temperature=0, response_format=SCHEMA_FORMAT)
    assert plain.headers["x-llmdock-cache"] == "miss"
    assert structured.headers["x-llmdock-cache"] == "miss"
    again = await chat(gw, temperature=0, tools=[WEATHER_TOOL])
    assert again.headers["x-llmdock-cache"] == "miss"
    hit = await chat(gw, temperature=0, response_format=SCHEMA_FORMAT)
    assert hit.headers["x-llmdock-cache"] == "hit"
    assert orjson.loads(hit.json()["choices"][0]["message"]["content"]) == {"name": "Ada", "age": 36}
