"""The openai SDK's Responses API (``client.responses``), unchanged, against a real ``llmdock serve`` on the
embedded SmolLM2: plain, streamed, tools, structured output, ``previous_response_id``, get and delete."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from llmdock.errors import NotFound
from llmdock.store import Store, get_trace
from tests.integration.conftest import Server

pytestmark = [pytest.mark.model, pytest.mark.server]

QUESTION = "What is the capital of Italy? Answer in one sentence."
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}
STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def written_trace(server: Server, trace_id: str) -> Any:
    """The trace once the server's writer has stored it (it writes in batches, off the request path)."""
    store = Store(f"sqlite:///{server.home / 'llmdock.db'}")
    deadline = time.monotonic() + 10
    while True:
        try:
            return get_trace(store, trace_id)[0]
        except NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_plain_response_answers_with_usage(client: openai.OpenAI) -> None:
    resp = client.responses.create(model="smollm2", input=QUESTION, max_output_tokens=40, temperature=0)
    assert resp.id.startswith("resp_")
    assert resp.status in ("completed", "incomplete")
    assert "Rome" in resp.output_text
    assert resp.usage is not None
    assert resp.usage.input_tokens > 10
    assert resp.usage.output_tokens > 0
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens


def test_a_streamed_response_sends_the_events_in_order_and_the_plain_answers_text(
    client: openai.OpenAI,
) -> None:
    plain = client.responses.create(model="smollm2", input=QUESTION, max_output_tokens=30, temperature=0)
    events = list(
        client.responses.create(
            model="smollm2", input=QUESTION, max_output_tokens=30, temperature=0, stream=True
        )
    )
    kinds = [e.type for e in events]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]
    final_kind = "response.completed" if plain.status == "completed" else "response.incomplete"
    assert collapsed == [*STREAM_ORDER[:-1], final_kind]
    assert kinds.count("response.output_text.delta") > 3
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    final = events[-1].response  # type: ignore[union-attr]
    assert deltas == final.output_text == plain.output_text
    assert final.usage is not None
    assert final.usage.output_tokens == plain.usage.output_tokens  # type: ignore[union-attr]


def test_a_forced_function_tool_comes_back_as_a_function_call_with_json_arguments(
    client: openai.OpenAI,
) -> None:
    resp = client.responses.create(
        model="smollm2",
        input="What is the weather in Paris right now?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        temperature=0,
    )
    (call,) = [item for item in resp.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    # the tool's result goes back as a function_call_output item; the model answers in text
    answer = client.responses.create(
        model="smollm2",
        input=[
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "sunny", "c": 21}'}
        ],
        previous_response_id=resp.id,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
        max_output_tokens=40,
        temperature=0,
    )
    assert answer.output[0].type == "message"
    assert answer.output_text.strip()


def test_a_json_schema_format_gives_json_that_follows_the_schema(client: openai.OpenAI) -> None:
    resp = client.responses.create(
        model="smollm2",
        input="Name the capital of France and its country.",
        text={"format": {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}},
        temperature=0,
    )
    jsonschema.validate(json.loads(resp.output_text), CITY)


def test_the_sdks_parse_helper_reads_the_answer_into_a_model(client: openai.OpenAI) -> None:
    class City(BaseModel):
        city: str
        country: str

    resp = client.responses.parse(
        model="smollm2", input="Name the capital of Spain and its country.", text_format=City, temperature=0
    )
    assert isinstance(resp.output_parsed, City)
    assert resp.output_parsed.city


def test_previous_response_id_lets_the_second_turn_see_the_first(
    client: openai.OpenAI, server: Server
) -> None:
    first = client.responses.create(
        model="smollm2",
        # Not a name: names are masked in stored conversations by default (privacy.pii), so a continued
        # conversation would see "<PERSON>" where the user's name was.
        input="The secret codeword is Zorblax. Please remember it.",
        instructions="You are a helpful assistant.",
        max_output_tokens=30,
        temperature=0,
    )
    second = client.responses.create(
        model="smollm2",
        input="What is the secret codeword?",
        previous_response_id=first.id,
        max_output_tokens=30,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    assert "Zorblax" in second.output_text
    trace = written_trace(server, second.id.removeprefix("resp_"))
    assert [m["role"] for m in trace.input["messages"]] == ["user", "assistant", "user"]
    assert trace.input["messages"][1]["content"] == first.output_text


def test_a_stored_response_is_retrieved_listed_and_deleted(client: openai.OpenAI) -> None:
    made = client.responses.create(
        model="smollm2", input="Say hello.", max_output_tokens=10, temperature=0, metadata={"case": "crud"}
    )
    got = client.responses.retrieve(made.id)
    assert got.output_text == made.output_text
    assert got.metadata == {"case": "crud"}
    items = client.responses.input_items.list(made.id)
    assert [item.type for item in items.data] == ["message"]
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.responses.create(model="smollm2", input="Again?", previous_response_id=made.id)
