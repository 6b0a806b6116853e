"""``/v1/responses`` on the fake backend: the request translated to the chat pipeline, the answer and the
event stream in OpenAI's shapes (read back by the openai SDK itself), stored responses and their rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import orjson
import pytest
from pydantic import BaseModel
from sqlalchemy import text

from llmdock.config import ModelConfig, Settings
from llmdock.errors import InvalidRequest
from llmdock.gateway.responses_schemas import ResponsesBody
from llmdock.gateway.responses_translate import chat_body, chat_messages, responses_error
from llmdock.privacy.crypto import new_key
from llmdock.store import get_trace
from llmdock.store.audit import Actor
from llmdock.store.keyring import is_sealed
from tests.conftest import Gateway

MakeGateway = Callable[[Settings], Any]
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL = '[{"name": "get_weather", "arguments": {"city": "Paris"}}]'
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def events_of(text: str) -> list[dict[str, Any]]:
    """The data of each server-sent event, checking its ``event:`` line names the same type."""
    found = []
    for block in text.strip().split("\n\n"):
        head, data = block.split("\n", 1)
        event = orjson.loads(data.removeprefix("data: "))
        assert head == f"event: {event['type']}"
        found.append(event)
    return found


async def replying(
    factory: MakeGateway, make_settings: Callable[..., Settings], reply: str | None
) -> Gateway:
    models = {"m": ModelConfig(backend="fake", reply=reply)}
    gw: Gateway = await factory(make_settings(models=models, default_model="m", default_embedding_model=""))
    return gw


def sdk(gw: Gateway, key: str = "unused") -> openai.AsyncOpenAI:
    """The openai SDK talking to the in-process gateway."""
    transport = gw.client._transport  # the ASGI transport of the gateway fixture
    http = httpx.AsyncClient(transport=transport, base_url="http://gw")
    return openai.AsyncOpenAI(base_url="http://gw/v1", api_key=key, http_client=http, max_retries=0)


# --- translation ---------------------------------------------------------------------------------------


def test_items_become_chat_messages_with_consecutive_calls_in_one_assistant_turn() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"A"}'},
        {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"B"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ]
    messages = chat_messages(items)
    assert messages[0] == {"role": "user", "content": "Weather?"}
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_1", "call_2"]
    assert messages[1]["content"] is None
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


def test_a_responses_request_is_the_chat_request_it_means() -> None:
    body = ResponsesBody.model_validate(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": "Who?",
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "text": {"format": {"type": "json_schema", "name": "person", "schema": PERSON}},
            "max_output_tokens": 30,
            "temperature": 0.5,
            "top_p": 0.9,
        }
    )
    earlier = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}]
    chat = chat_body(body, earlier)
    assert [m.role for m in chat.messages] == ["system", "assistant", "user"]
    assert chat.messages[2].content == "Who?"
    assert chat.tools is not None
    assert chat.tools[0].function.name == "get_weather"
    assert chat.structured_fields()["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }  # type: ignore[index]
    assert chat.response_format is not None
    assert chat.response_format.json_schema is not None
    assert chat.response_format.json_schema.schema_ == PERSON
    assert (chat.max_tokens, chat.temperature, chat.top_p) == (30, 0.5, 0.9)


def test_a_chat_field_in_an_error_is_renamed_to_the_responses_field() -> None:
    exc = responses_error(
        InvalidRequest("tools.1.function.name: defined twice", param="tools.1.function.name")
    )
    assert (exc.param, exc.message) == ("tools.1.name", "tools.1.name: defined twice")
    exc = responses_error(InvalidRequest("x", param="response_format.json_schema.schema.type"))
    assert exc.param == "text.format.schema.type"


# --- answers through the SDK ---------------------------------------------------------------------------


async def test_a_plain_response_has_its_text_usage_and_trace(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, None)
    resp = await sdk(gw).responses.create(model="m", input="hello there", instructions="Be kind.")
    assert resp.output_text == "fake answer to: hello there"
    assert resp.status == "completed"
    assert resp.usage is not None
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.usage.output_tokens == 5  # the fake counts words
    gw.flush_traces()
    assert gw.runtime.store is not None
    trace, _ = get_trace(gw.runtime.store, resp.id.removeprefix("resp_"))
    assert trace.input["messages"][0] == {"role": "system", "content": "Be kind."}
    assert trace.attributes["llmdock.api"] == "responses"


async def test_an_answer_cut_at_max_output_tokens_is_incomplete(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, None)
    resp = await sdk(gw).responses.create(model="m", input="hello there", max_output_tokens=2)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "fake answer"


async def test_a_forced_tool_comes_back_as_a_function_call_item(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, CALL)
    resp = await sdk(gw).responses.create(
        model="m",
        input="Weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
    )
    (call,) = resp.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    assert call.call_id.startswith("call_")
    assert orjson.loads(call.arguments) == {"city": "Paris"}


async def test_the_sdk_parses_a_json_schema_answer_into_its_model(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    class Person(BaseModel):
        name: str
        age: int

    gw = await replying(gateway_factory, make_settings, '{"name": "Ada", "age": 36}')
    resp = await sdk(gw).responses.parse(model="m", input="Who?", text_format=Person)
    assert resp.output_parsed == Person(name="Ada", age=36)
    raw = await gw.client.post(
        "/v1/responses", json={"model": "m", "input": "Who?", "text": {"format": {"type": "json_object"}}}
    )
    assert orjson.loads(raw.json()["output"][0]["content"][0]["text"]) == {"name": "Ada", "age": 36}


# --- streams -------------------------------------------------------------------------------------------

TEXT_EVENTS = [
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


async def test_a_stream_sends_openais_events_in_order(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, None)
    raw = await gw.client.post("/v1/responses", json={"model": "m", "input": "hello there", "stream": True})
    events = events_of(raw.text)
    kinds = [e["type"] for e in events]
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]] == TEXT_EVENTS
    assert kinds.count("response.output_text.delta") == 5  # the fake streams word by word
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = events[-1]["response"]
    assert deltas == done["output"][0]["content"][0]["text"] == "fake answer to: hello there"
    assert done["usage"]["output_tokens"] == 5
    assert len({e["item_id"] for e in events if "item_id" in e}) == 1


async def test_the_sdk_stream_helper_rebuilds_the_final_response(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, None)
    async with sdk(gw).responses.stream(model="m", input="hello there") as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_response()
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert final.output_text == "fake answer to: hello there"


async def test_a_streamed_tool_call_sends_argument_events(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, CALL)
    body = {"model": "m", "input": "Weather?", "tools": [WEATHER], "tool_choice": "required", "stream": True}
    events = events_of((await gw.client.post("/v1/responses", json=body)).text)
    kinds = [e["type"] for e in events]
    assert kinds[2] == "response.output_item.added"
    assert events[2]["item"]["type"] == "function_call"
    assert "response.output_text.delta" not in kinds
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert orjson.loads(deltas) == orjson.loads(done["arguments"]) == {"city": "Paris"}
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert events[-1]["response"]["output"][0]["arguments"] == done["arguments"]


# --- stored responses ----------------------------------------------------------------------------------


async def test_previous_response_id_continues_the_stored_conversation(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, None)
    client = sdk(gw)
    first = await client.responses.create(
        model="m", input="My favourite colour is teal.", instructions="Be kind."
    )
    second = await client.responses.create(
        model="m", input="What is my favourite colour?", previous_response_id=first.id
    )
    gw.flush_traces()
    assert gw.runtime.store is not None
    trace, _ = get_trace(gw.runtime.store, second.id.removeprefix("resp_"))
    assert trace.input["messages"] == [  # the earlier instructions are not carried over, as OpenAI does
        {"role": "user", "content": "My favourite colour is teal."},
        {"role": "assistant", "content": "fake answer to: My favourite colour is teal."},
        {"role": "user", "content": "What is my favourite colour?"},
    ]
    assert (await client.responses.retrieve(second.id)).output_text == second.output_text
    items = await client.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["What is my favourite colour?"]  # type: ignore[union-attr]
    await client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError, match="not found"):
        await client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="m", input="again", previous_response_id=first.id)


async def test_store_false_keeps_nothing(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, None)
    resp = await sdk(gw).responses.create(model="m", input="hi", store=False)
    assert resp.store is False
    assert (await gw.client.get(f"/v1/responses/{resp.id}")).status_code == 404


async def test_another_teams_key_cannot_read_or_continue_a_response(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(make_settings(auth={"cache_ttl_s": 0}))
    d = gw.runtime.auth.directory
    assert d is not None
    actor = Actor("test", "responses")
    d.create_user("root", actor, role="admin")  # turns auth on
    d.create_key("root", actor)
    keys = {}
    for team in ("blue", "red"):
        d.create_team(team, actor)
        d.create_user(f"dev-{team}", actor, role="developer", team=team)
        keys[team], _ = d.create_key(f"dev-{team}", actor)
    gw.runtime.auth.refresh()
    blue, red = sdk(gw, keys["blue"]), sdk(gw, keys["red"])
    made = await blue.responses.create(model="fake", input="a blue secret")
    assert (await blue.responses.retrieve(made.id)).id == made.id
    with pytest.raises(openai.AuthenticationError):
        await sdk(gw, "sk-not-a-key").responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        await red.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        await red.responses.create(model="fake", input="tell me", previous_response_id=made.id)
    with pytest.raises(openai.NotFoundError):
        await red.responses.delete(made.id)


async def test_stored_responses_are_masked_and_covered_by_gdpr_requests(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    from llmdock.privacy.gdpr import erase_subject, export_subject

    gw: Gateway = await gateway_factory(make_settings(privacy={"pii": "mask"}))
    email = "ana.lopez@example.org"
    body = {"model": "fake", "input": f"I am {email}", "user": "ana"}
    resp = (await gw.client.post("/v1/responses", json=body)).json()
    assert email in resp["output"][0]["content"][0]["text"]  # the client's answer is untouched
    kept = (await gw.client.get(f"/v1/responses/{resp['id']}")).json()
    assert kept["output"][0]["content"][0]["text"] == "fake answer to: I am <EMAIL_ADDRESS>"
    assert kept["id"] == resp["id"]
    store, secret = gw.runtime.store, gw.runtime.auth.secret
    assert store is not None
    actor = Actor("test", "pytest")
    (exported,) = export_subject(store, "ana", actor, secret)["responses"]
    assert exported["conversation"][0]["content"][0]["text"] == "I am <EMAIL_ADDRESS>"
    assert erase_subject(store, "ana", actor, secret)["responses_deleted"] == 1
    assert (await gw.client.get(f"/v1/responses/{resp['id']}")).status_code == 404


async def test_input_items_are_listed_newest_first_in_pages(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await replying(gateway_factory, make_settings, None)
    texts = ["one", "two", "three"]
    body = {"model": "m", "input": [{"role": "user", "content": t} for t in texts]}
    made = (await gw.client.post("/v1/responses", json=body)).json()
    url = f"/v1/responses/{made['id']}/input_items"
    newest = (await gw.client.get(url, params={"limit": 2})).json()
    assert [i["content"][0]["text"] for i in newest["data"]] == ["three", "two"]
    assert newest["has_more"] is True
    rest = (await gw.client.get(url, params={"limit": 2, "after": newest["last_id"]})).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["one"]
    assert rest["has_more"] is False
    oldest = (await gw.client.get(url, params={"order": "asc"})).json()
    assert [i["content"][0]["text"] for i in oldest["data"]] == texts
    assert len({i["id"] for i in oldest["data"]}) == 3


async def test_stored_responses_are_sealed_with_encrypt_bodies(
    gateway_factory: MakeGateway,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMDOCK_ENCRYPTION_KEY", new_key())
    gw: Gateway = await gateway_factory(make_settings(privacy={"encrypt_bodies": True}))
    made = (await gw.client.post("/v1/responses", json={"model": "fake", "input": "about tulips"})).json()
    assert gw.runtime.store is not None
    with gw.runtime.store.engine.connect() as conn:
        (data,) = conn.execute(text("SELECT data FROM responses WHERE id = :id"), {"id": made["id"]}).one()
    assert "tulips" not in data
    assert is_sealed(orjson.loads(data)["$sealed"])
    kept = (await gw.client.get(f"/v1/responses/{made['id']}")).json()
    assert kept["output"][0]["content"][0]["text"] == "fake answer to: about tulips"
    follow = {"model": "fake", "input": "more", "previous_response_id": made["id"]}
    assert (await gw.client.post("/v1/responses", json=follow)).status_code == 200


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "status", "param"),
    [
        (
            {"input": [{"type": "function_call_output", "output": "x"}]},
            400,
            "input.0.function_call_output.call_id",
        ),
        ({"input": [{"type": "input_image", "image_url": "x"}]}, 400, "input.0"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image"}]}]},
            400,
            "input.0.message.content.0.type",
        ),
        ({"tools": [{"type": "web_search"}]}, 400, "tools.0"),
        (
            {"text": {"format": {"type": "json_schema", "name": "p", "schema": {"type": "nope"}}}},
            400,
            "text.format.schema.type",
        ),
        ({"text": {"format": {"type": "json_schema", "name": "p"}}}, 400, "text.format.schema"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "launch"}},
            400,
            "tool_choice.name",
        ),
        ({"background": True}, 400, "background"),
        ({"previous_response_id": "resp_nope"}, 404, "previous_response_id"),
    ],
)
async def test_bad_requests_are_openai_errors_naming_the_field(
    gateway: Gateway, extra: dict[str, Any], status: int, param: str
) -> None:
    resp = await gateway.client.post("/v1/responses", json={"model": "fake", "input": "hi", **extra})
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["param"] == param
    assert error["message"].startswith(param) or "not found" in error["message"]
