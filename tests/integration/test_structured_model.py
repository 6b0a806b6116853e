"""Structured output from the real embedded model (SmolLM2 via llama.cpp, grammar-constrained), through the
official openai SDK against a real ``llmdock serve``."""

from __future__ import annotations

import time
from typing import Any, Literal

import httpx
import jsonschema
import openai
import orjson
import pydantic
import pytest

from llmdock.errors import NotFound
from llmdock.store import Store, get_trace
from tests.integration.conftest import Server

pytestmark = [pytest.mark.model, pytest.mark.server]

ORDER = {
    "type": "object",
    "properties": {
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 30},
                "tier": {"enum": ["free", "pro", "enterprise"]},
            },
            "required": ["name", "tier"],
            "additionalProperties": False,
        },
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "product": {"type": "string", "maxLength": 30},
                    "quantity": {"type": "integer"},
                    "gift": {"type": "boolean"},
                },
                "required": ["product", "quantity"],
                "additionalProperties": False,
            },
            "minItems": 1,
            "maxItems": 3,
        },
        "note": {"type": ["string", "null"], "maxLength": 40},
    },
    "required": ["customer", "items"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 20}},
            "required": ["zone"],
        },
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris right now?"}]


def test_json_object_mode_answers_a_json_object(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Give the name and capital of France."}],
        response_format={"type": "json_object"},
        max_tokens=120,
        temperature=0,
    )
    assert isinstance(orjson.loads(resp.choices[0].message.content or ""), dict)
    assert resp.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_a_nested_schema_with_arrays_enums_and_required_fields_is_followed(
    client: openai.OpenAI, server: Server, temperature: float
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[
            {"role": "user", "content": "Alice (a pro customer) orders two books and a pen as a gift."}
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "order", "schema": ORDER, "strict": True},
        },
        max_tokens=250,
        temperature=temperature,
        seed=11,
    )
    resp = raw.parse()
    answer = orjson.loads(resp.choices[0].message.content or "")
    jsonschema.validate(answer, ORDER)
    spans = _spans(server, raw.headers["x-llmdock-trace-id"])
    structured = next(s for s in spans if s.name == "structured")
    assert structured.attributes["llmdock.structured.grammar"] == "schema"
    assert structured.attributes["llmdock.structured.outcome"] in ("valid", "reasked")


STORY = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "story": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "story", "tags"],
}


def test_an_answer_cut_at_max_tokens_is_asked_again_with_a_grammar_that_fits(
    client: openai.OpenAI, server: Server
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Write a long story about a dragon and a knight."}],
        response_format={"type": "json_schema", "json_schema": {"name": "story", "schema": STORY}},
        max_tokens=80,
        temperature=0,
    )
    resp = raw.parse()
    jsonschema.validate(orjson.loads(resp.choices[0].message.content or ""), STORY)
    assert resp.choices[0].finish_reason == "stop"
    structured = next(s for s in _spans(server, raw.headers["x-llmdock-trace-id"]) if s.name == "structured")
    assert structured.attributes["llmdock.structured.outcome"] == "reasked"
    assert "cut off" in structured.attributes["llmdock.structured.errors"][0]
    assert structured.attributes["llmdock.structured.grammar"] == "schema+budget"


def _spans(server: Server, trace_id: str) -> list[Any]:
    """The trace's spans, once the server's trace writer has stored them (it writes in batches)."""
    store = Store(f"sqlite:///{server.home / 'llmdock.db'}")
    deadline = time.monotonic() + 20
    while True:
        try:
            return get_trace(store, trace_id)[1]
        except NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=30)
    country: str = pydantic.Field(max_length=30)
    population_millions: float
    continent: Literal["Europe", "Asia", "Africa", "America", "Oceania"]


def test_the_sdk_parse_helper_gets_a_pydantic_object(client: openai.OpenAI) -> None:
    resp = client.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": "Describe the city of Rome."}],
        response_format=City,
        max_tokens=150,
        temperature=0,
    )
    city = resp.choices[0].message.parsed
    assert isinstance(city, City)
    assert city.continent in ("Europe", "Asia", "Africa", "America", "Oceania")


def _arguments(call: Any, tool: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = orjson.loads(call.function.arguments)
    jsonschema.validate(args, tool["function"]["parameters"])
    return args


def test_a_required_tool_call_through_the_sdk(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="smollm2",
        messages=ASK_WEATHER,  # type: ignore[arg-type]
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=120,
        temperature=0,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")  # type: ignore[union-attr]
    _arguments(call, WEATHER if call.function.name == "get_weather" else TIME)  # type: ignore[union-attr]


def test_a_named_tool_call_and_the_conversation_after_it(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model="smollm2",
        messages=ASK_WEATHER,  # type: ignore[arg-type]
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=120,
        temperature=0,
    )
    (call,) = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    _arguments(call, WEATHER)
    # the tool's result goes back; the model answers in text (tool_choice auto lets it)
    follow = client.chat.completions.create(
        model="smollm2",
        messages=[  # type: ignore[list-item]
            *ASK_WEATHER,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 degrees celsius"},
        ],
        tools=[WEATHER, TIME],  # type: ignore[list-item]
        max_tokens=60,
        temperature=0,
    )
    message = follow.choices[0].message
    assert message.content or message.tool_calls


def test_streamed_structured_answers_arrive_in_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Bob (free tier) orders one lamp."}],
        response_format={"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}},
        max_tokens=200,
        temperature=0,
        stream=True,
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in parts if p]) > 3
    jsonschema.validate(orjson.loads("".join(parts)), ORDER)

    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(
        model="smollm2",
        messages=ASK_WEATHER,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=120,
        temperature=0,
        stream=True,
    ):
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"name": "", "arguments": ""})
            entry["name"] += (delta.function.name or "") if delta.function else ""
            entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    jsonschema.validate(orjson.loads(calls[0]["arguments"]), WEATHER["function"]["parameters"])


def test_auto_gives_either_text_or_a_valid_call(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER],  # type: ignore[list-item]
        max_tokens=40,
        temperature=0,
    )
    message = resp.choices[0].message
    if message.tool_calls:
        _arguments(message.tool_calls[0], WEATHER)
    else:
        assert message.content
        assert not message.content.startswith("[")


def _stream_events(server: Server, body: dict[str, Any]) -> tuple[list[Any], str]:
    """The SSE events of a streamed chat request, and its trace id."""
    with httpx.stream("POST", f"{server.v1}/chat/completions", json=body, timeout=120) as resp:
        assert resp.status_code == 200
        text = "".join(resp.iter_text())
        trace_id = resp.headers["x-llmdock-trace-id"]
    events = [
        b[len("data: ") :] for b in text.split("\n\n") if b.startswith("data: ") and b != "data: [DONE]"
    ]
    return [orjson.loads(e) for e in events], trace_id


def test_a_grammar_enforced_stream_sends_the_answer_as_it_is_generated(server: Server) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Carol (enterprise) orders three chairs and a desk."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}},
        "max_tokens": 200,
        "temperature": 0,
        "stream": True,
    }
    events, trace_id = _stream_events(server, body)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    jsonschema.validate(orjson.loads(text), ORDER)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    spans = _spans(server, trace_id)
    generate = next(s for s in spans if s.name == "generate")
    # Live: the first token left well before the last one (buffered, they leave together: the generate span
    # ends right after its first token).
    assert generate.duration_ms - generate.attributes["llmdock.time_to_first_token_ms"] > 300
    store = Store(f"sqlite:///{server.home / 'llmdock.db'}")
    trace = get_trace(store, trace_id)[0]
    assert trace.attributes["llmdock.structured.stream"] == "live"
    assert trace.attributes["llmdock.structured.outcome"] == "valid"


def test_a_live_stream_whose_answer_fails_at_the_end_ends_with_an_error_event(server: Server) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "story", "schema": STORY}},
        "max_tokens": 12,  # cut off: a stream cannot take its text back to ask again
        "temperature": 0,
        "stream": True,
    }
    events, _ = _stream_events(server, body)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1]).startswith("{")
    error = events[-1]["error"]
    assert error["code"] == "invalid_structured_output"
    assert "cut off" in error["message"]
    assert not any(e["choices"][0].get("finish_reason") for e in events[:-1])


MAGIC = {
    "type": "function",
    "function": {
        "name": "magic_function",
        "description": "Apply a magic function to an input.",
        "parameters": {  # as pydantic writes Field(gt=-1000, lt=1000), in LangChain's test_tool_choice
            "type": "object",
            "properties": {"input": {"type": "integer", "exclusiveMinimum": -1000, "exclusiveMaximum": 1000}},
            "required": ["input"],
        },
    },
}


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_bounded_tool_argument_is_within_its_bounds_at_the_first_answer(
    client: openai.OpenAI, server: Server, temperature: float
) -> None:
    """At temperature 0 SmolLM2 wrote 1000 here three times over (a 502) before the grammar carried bounds."""
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Hello!"}],
        tools=[MAGIC, WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=128,
        temperature=temperature,
        seed=3,
    )
    calls = raw.parse().choices[0].message.tool_calls or []
    for call in calls:
        if call.function.name == "magic_function":  # type: ignore[union-attr]
            assert -1000 < orjson.loads(call.function.arguments)["input"] < 1000  # type: ignore[union-attr]
    structured = next(s for s in _spans(server, raw.headers["x-llmdock-trace-id"]) if s.name == "structured")
    assert structured.attributes["llmdock.structured.outcome"] == "valid"
    assert "llmdock.structured.unenforced" not in structured.attributes


def test_json_object_mode_closes_its_object_within_a_small_max_tokens(
    client: openai.OpenAI, server: Server
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Describe every planet of the solar system in a JSON object."}],
        response_format={"type": "json_object"},
        max_tokens=40,
        temperature=0,
    )
    resp = raw.parse()
    assert isinstance(orjson.loads(resp.choices[0].message.content or ""), dict)
    assert resp.choices[0].finish_reason == "stop"
    structured = next(s for s in _spans(server, raw.headers["x-llmdock-trace-id"]) if s.name == "structured")
    assert "cut off" in structured.attributes["llmdock.structured.errors"][0]
    assert structured.attributes["llmdock.structured.grammar"] == "json+budget"


def test_a_json_object_stream_closes_its_object_within_a_small_max_tokens(server: Server) -> None:
    """A live stream cannot be asked again, so its object grammar is bounded from the first token."""
    body = {
        "model": "smollm2",
        "messages": [
            {"role": "user", "content": "Describe every planet of the solar system in a JSON object."}
        ],
        "response_format": {"type": "json_object"},
        "max_tokens": 40,
        "temperature": 0,
        "stream": True,
    }
    events, trace_id = _stream_events(server, body)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    assert isinstance(orjson.loads(text), dict)
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    _spans(server, trace_id)  # waits for the trace writer
    trace = get_trace(Store(f"sqlite:///{server.home / 'llmdock.db'}"), trace_id)[0]
    assert trace.attributes["llmdock.structured.stream"] == "live"
    assert trace.attributes["llmdock.structured.grammar"] == "json+budget"
