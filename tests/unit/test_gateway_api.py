"""The OpenAI-compatible API on the fake backend: shapes, streaming, and every kind of bad input."""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.store import get_trace
from tests.conftest import Gateway

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hello there"}]}


def sse_events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            payload = block[len("data: ") :]
            events.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return events


async def test_chat_completion_has_openai_shape_and_usage(gateway: Gateway) -> None:
    resp = await gateway.client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "fake answer to: hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 5
    assert body["id"] == "chatcmpl-" + resp.headers["x-llmdock-trace-id"]


async def test_streamed_chat_sends_role_then_content_then_done(gateway: Gateway) -> None:
    resp = await gateway.client.post(
        "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2] if e["choices"])
    assert text == "fake answer to: hello there"
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"]["completion_tokens"] == 5


async def test_legacy_completion(gateway: Gateway) -> None:
    resp = await gateway.client.post(
        "/v1/completions", json={"model": "fake", "prompt": "once upon", "max_tokens": 3}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "fake completion of:"
    assert body["choices"][0]["finish_reason"] == "length"


async def test_embeddings_as_floats_and_base64_agree(gateway: Gateway) -> None:
    floats = (
        await gateway.client.post("/v1/embeddings", json={"model": "fake-embed", "input": ["a", "b"]})
    ).json()
    b64 = (
        await gateway.client.post(
            "/v1/embeddings", json={"model": "fake-embed", "input": ["a", "b"], "encoding_format": "base64"}
        )
    ).json()
    assert [d["index"] for d in floats["data"]] == [0, 1]
    decoded = struct.unpack("<8f", base64.b64decode(b64["data"][0]["embedding"]))
    assert decoded == pytest.approx(floats["data"][0]["embedding"])


async def test_models_list_and_get(gateway: Gateway) -> None:
    listing = (await gateway.client.get("/v1/models")).json()
    assert {m["id"] for m in listing["data"]} == {"fake", "fake-embed"}
    one = await gateway.client.get("/v1/models/fake")
    assert one.json()["id"] == "fake"
    assert (await gateway.client.get("/v1/models/nope")).status_code == 404


async def test_health_and_ready(gateway: Gateway) -> None:
    assert (await gateway.client.get("/health")).json()["status"] == "ok"
    ready = await gateway.client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["store"] == {"ok": True}


# --- bad input: each answers a clear OpenAI-shaped error, never a 500 -------------------------------------


async def test_malformed_json_is_400(gateway: Gateway) -> None:
    resp = await gateway.client.post(
        "/v1/chat/completions",
        content=b'{"model": "fake", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "fake"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({**CHAT, "temperature": "hot"}, "temperature"),
        ({**CHAT, "max_tokens": -1}, "max_tokens"),
        ({"model": "fake", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({**CHAT, "n": 2}, "n"),
    ],
)
async def test_missing_or_wrong_typed_field_is_422_naming_it(
    gateway: Gateway, body: dict[str, Any], field: str
) -> None:
    resp = await gateway.client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["param"] == field
    assert err["message"].startswith(field + ":")


async def test_unknown_model_is_404_listing_known_models(gateway: Gateway) -> None:
    resp = await gateway.client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"})
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert err["code"] == "model_not_found"
    assert "fake" in err["message"]
    assert "fake-embed" in err["message"]


async def test_body_over_limit_is_413(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(make_settings(max_body_bytes=1000))
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]}
    resp = await gw.client.post("/v1/chat/completions", json=big)
    assert resp.status_code == 413
    assert "1000" in resp.json()["error"]["message"]

    async def chunked() -> Any:  # no content-length: the limit is enforced while reading
        yield orjson.dumps(big)

    resp = await gw.client.post("/v1/chat/completions", content=chunked())
    assert resp.status_code == 413


async def test_prompt_over_context_window_is_400_with_numbers(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(
        make_settings(models={"fake": ModelConfig(backend="fake", context_window=10)})
    )
    long = {"model": "fake", "messages": [{"role": "user", "content": "word " * 50}]}
    resp = await gw.client.post("/v1/chat/completions", json=long)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert err["context_window"] == 10
    assert "maximum context length is 10 tokens" in err["message"]
    # and the same check answers before a stream starts
    resp = await gw.client.post("/v1/chat/completions", json={**long, "stream": True})
    assert resp.status_code == 400


async def test_full_queue_answers_503_with_retry_after(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    import asyncio

    slow = ModelConfig(backend="fake", max_queue=0, delay_s=0.5)
    gw: Gateway = await gateway_factory(make_settings(models={"fake": slow}))
    first = asyncio.ensure_future(gw.client.post("/v1/chat/completions", json=CHAT))
    await asyncio.sleep(0.1)
    second = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert second.status_code == 503
    assert second.headers["retry-after"] == "1"
    assert (await first).status_code == 200
    assert (await gw.client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_unknown_route_is_json_404(gateway: Gateway) -> None:
    resp = await gateway.client.get("/v1/nothing")
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "invalid_request_error"


async def test_embedding_request_to_chat_model_is_400(gateway: Gateway) -> None:
    resp = await gateway.client.post("/v1/embeddings", json={"model": "fake", "input": "x"})
    assert resp.status_code == 400


# --- traces -----------------------------------------------------------------------------------------------


async def test_each_request_leaves_a_trace_with_one_span_per_stage(gateway: Gateway) -> None:
    resp = await gateway.client.post("/v1/chat/completions", json={**CHAT, "temperature": 0.3, "seed": 7})
    gateway.flush_traces()
    assert gateway.runtime.store is not None
    trace, spans = get_trace(gateway.runtime.store, resp.headers["x-llmdock-trace-id"])
    assert trace.status == "ok"
    assert [s.name for s in spans] == ["preprocess", "cache", "generate", "structured", "postprocess"]
    assert spans[0].attributes["gen_ai.usage.input_tokens"] == trace.prompt_tokens
    assert trace.attributes["gen_ai.request.temperature"] == 0.3
    assert trace.attributes["gen_ai.request.seed"] == 7
    assert trace.attributes["gen_ai.operation.name"] == "chat"
    assert trace.output == "fake answer to: hello there"


async def test_a_failed_request_is_traced_with_its_error(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(
        make_settings(models={"fake": ModelConfig(backend="fake", context_window=5)})
    )
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": [{"role": "user", "content": "a b c d e f"}]},
    )
    gw.flush_traces()
    assert gw.runtime.store is not None
    trace, spans = get_trace(gw.runtime.store, resp.headers.get("x-llmdock-trace-id") or "")
    assert trace.status == "error"
    assert trace.http_status == 400
    assert spans[0].status == "error"
