"""guard_out redaction on answers that must follow a JSON schema or tools (a scripted HTTP upstream answers).

With ``structured`` before ``guard_out`` the guard sees the final answer (re-asked ones included). A redaction
that keeps the answer valid for its schema goes out; one that would break it (a value that is not a string,
a pattern the redaction no longer matches) blocks the answer with a clear 400 ``content_policy``, so invalid
JSON is never returned as a success. Tool-call arguments are redacted too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from llmdock.config import ModelConfig, Settings
from tests.conftest import Gateway
from tests.integration import test_structured_upstream
from tests.unit.test_gateway_api import sse_events
from tests.upstream import Upstream

PIPELINE = ["preprocess", "guard_in", "generate", "structured", "guard_out", "postprocess"]
CARD = "4539148803436467"  # passes Luhn


def schema_format(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "contact", "schema": schema, "strict": True}}


CONTACT = schema_format({"name": {"type": "string"}, "email": {"type": "string"}})
CONTACT_PATTERN = schema_format({"name": {"type": "string"}, "email": {"type": "string", "pattern": "@"}})
PAYMENT = schema_format({"name": {"type": "string"}, "card": {"type": "integer"}})
SEND = {
    "type": "function",
    "function": {
        "name": "send_mail",
        "parameters": {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]},
    },
}
ASK = [{"role": "user", "content": "Who is the contact?"}]
scripted = test_structured_upstream.scripted  # the fixture: an HTTP upstream answering what a test scripts
ADA = {"content": '{"name": "Ada", "email": "ada@example.com"}'}


@pytest.fixture
def redacting_gateway(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> Callable[..., Any]:
    async def make(up: Upstream) -> Gateway:
        model = ModelConfig(backend="openai_compat", base_url=up.url, upstream_model="m")
        settings = make_settings(
            models={"remote": model},
            default_model="remote",
            default_embedding_model="",
            pipeline=PIPELINE,
            guards={"input": {}, "output": {"pii": {"action": "redact"}}},
        )
        gw: Gateway = await gateway_factory(settings)
        return gw

    return make


async def chat(gw: Gateway, **body: Any) -> httpx.Response:
    return await gw.client.post("/v1/chat/completions", json={"model": "remote", "messages": ASK, **body})


def streamed_content(resp: httpx.Response) -> str:
    events = [e for e in sse_events(resp.text) if e != "[DONE]"]
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events)


async def test_a_redaction_inside_a_string_value_keeps_the_answer_valid_for_its_schema(
    scripted: Callable[..., Upstream], redacting_gateway: Callable[..., Any]
) -> None:
    gw = await redacting_gateway(scripted(ADA))
    resp = await chat(gw, response_format=CONTACT)
    assert resp.status_code == 200
    content = resp.json()["choices"][0]["message"]["content"]
    assert orjson.loads(content) == {"name": "[PERSON]", "email": "[EMAIL-ADDRESS]"}
    streamed = await chat(gw, response_format=CONTACT, stream=True)
    assert streamed.status_code == 200
    assert orjson.loads(streamed_content(streamed)) == {"name": "[PERSON]", "email": "[EMAIL-ADDRESS]"}
    assert "ada@example.com" not in streamed.text


@pytest.mark.parametrize(
    ("response_format", "answer", "why"),
    [
        (PAYMENT, {"content": f'{{"name": "Ada", "card": {CARD}}}'}, "$: not valid JSON"),
        (CONTACT_PATTERN, ADA, "does not match '@'"),
    ],
)
async def test_a_redaction_that_would_break_the_schema_blocks_the_answer_clearly(
    scripted: Callable[..., Upstream],
    redacting_gateway: Callable[..., Any],
    response_format: dict[str, Any],
    answer: dict[str, Any],
    why: str,
) -> None:
    gw = await redacting_gateway(scripted(answer))
    resp = await chat(gw, response_format=response_format)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "content_policy"
    assert err["message"].startswith("Blocked: redacting the answer (pii) would break its structured output")
    assert why in err["message"]
    assert err["verdict"]["detector"] == "pii"
    assert CARD not in resp.text
    assert "ada@example.com" not in resp.text
    streamed = await chat(gw, response_format=response_format, stream=True)
    assert "content_policy" in streamed.text
    assert CARD not in streamed.text
    assert "ada@example.com" not in streamed.text


async def test_tool_call_arguments_are_redacted_too(
    scripted: Callable[..., Upstream], redacting_gateway: Callable[..., Any]
) -> None:
    call = {
        "id": "up_1",
        "type": "function",
        "function": {"name": "send_mail", "arguments": '{"to": "ada@example.com"}'},
    }
    gw = await redacting_gateway(scripted({"tool_calls": [call]}))
    resp = await chat(gw, tools=[SEND], tool_choice="required")
    assert resp.status_code == 200
    (tool_call,) = resp.json()["choices"][0]["message"]["tool_calls"]
    assert orjson.loads(tool_call["function"]["arguments"]) == {"to": "[EMAIL-ADDRESS]"}
    assert "ada@example.com" not in resp.text
    streamed = await chat(gw, tools=[SEND], tool_choice="required", stream=True)
    deltas = [e["choices"][0]["delta"] for e in sse_events(streamed.text) if e != "[DONE]"]
    args = "".join(d["tool_calls"][0]["function"].get("arguments", "") for d in deltas if d.get("tool_calls"))
    assert orjson.loads(args) == {"to": "[EMAIL-ADDRESS]"}
    assert "ada@example.com" not in streamed.text
