"""Hostile request bodies against a real ``llmdock serve`` on the embedded model: each gets a clear 4xx (an
OpenAI error naming the field where there is one) or a bounded answer, never a 5xx, and the server's memory
stays bounded."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import psutil
import pytest

from llmdock.gateway.schemas import ErrorBody
from tests.integration.conftest import Server

pytestmark = [pytest.mark.model, pytest.mark.server]

CHAT = {"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}
MB = 1024 * 1024


def nested(depth: int) -> bytes:
    """A chat body whose message content part holds ``depth`` nested JSON objects."""
    inner = b'{"a":' * depth + b"1" + b"}" * depth
    part = b'{"type":"text","text":"Say hi.","deep":' + inner + b"}"
    return b'{"model":"smollm2","max_tokens":4,"messages":[{"role":"user","content":[' + part + b"]}]}"


def post(
    server: Server, content: bytes | Iterator[bytes], path: str = "/chat/completions", **headers: str
) -> Any:
    return httpx.post(
        server.v1 + path,
        content=content,
        headers={"content-type": "application/json", "cache-control": "no-cache", **headers},
        timeout=120,
    )


def refused(resp: httpx.Response, status: int, param: str | None = None, says: str = "") -> ErrorBody:
    """``resp`` is the OpenAI error ``status`` naming ``param``, its message containing ``says``."""
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/json")
    error = ErrorBody.model_validate(resp.json())
    assert error.error.param == param, error
    assert says in error.error.message, error
    return error


def rss(server: Server) -> int:
    return int(psutil.Process(server.proc.pid).memory_info().rss)


@pytest.fixture
def warm(server: Server) -> Server:
    """The server after one answered request (the model loaded, its buffers allocated)."""
    assert httpx.post(server.v1 + "/chat/completions", json=CHAT, timeout=120).status_code == 200
    return server


def test_an_empty_body_is_refused_as_invalid_json(warm: Server) -> None:
    refused(post(warm, b""), 400, says="not valid JSON")


def test_a_10_mb_body_is_refused_before_it_is_read_whole(warm: Server) -> None:
    big = b'{"model":"smollm2","messages":[{"role":"user","content":"' + b"x" * (10 * MB) + b'"}]}'
    refused(post(warm, big), 413, says="the limit is")

    def chunks() -> Iterator[bytes]:  # no content-length: the server counts while it reads
        for start in range(0, len(big), MB):
            yield big[start : start + MB]

    refused(post(warm, chunks()), 413, says="exceeds the limit")


def test_10000_levels_of_nested_json_are_refused_and_1000_levels_are_answered(warm: Server) -> None:
    refused(post(warm, nested(10_000)), 400, says="not valid JSON")
    # Just under the parser's depth limit: parsed, validated, answered (or refused), never a 500.
    resp = post(warm, nested(1000))
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["usage"]["completion_tokens"] <= 4


def test_invalid_utf_8_is_refused(warm: Server) -> None:
    body = b'{"model":"smollm2","messages":[{"role":"user","content":"\xff\xfe hi"}]}'
    refused(post(warm, body), 400, says="not valid JSON")


def test_thousands_of_messages_are_refused_as_too_long_for_the_context(warm: Server) -> None:
    body = {**CHAT, "messages": [{"role": "user", "content": f"message {i}"} for i in range(3000)]}
    refused(post(warm, orjson.dumps(body)), 400, "messages", says="context length")


def test_a_huge_max_tokens_is_refused_as_too_long_for_the_context(warm: Server) -> None:
    refused(post(warm, orjson.dumps({**CHAT, "max_tokens": 10**9})), 400, "max_tokens", says="context length")
    beyond_64_bits = orjson.dumps(CHAT).replace(b'"max_tokens":4', b'"max_tokens":' + b"9" * 30)
    refused(post(warm, beyond_64_bits), 422, "max_tokens")
    refused(post(warm, orjson.dumps({**CHAT, "max_tokens": -1})), 422, "max_tokens")


def test_more_than_one_choice_is_refused_naming_n(warm: Server) -> None:
    refused(post(warm, orjson.dumps({**CHAT, "n": 2})), 422, "n")
    refused(post(warm, orjson.dumps({**CHAT, "n": 10**12})), 422, "n")


def test_unknown_fields_are_ignored_and_the_answer_is_bounded(warm: Server) -> None:
    extra = {f"unknown_{i}": {"nested": list(range(50))} for i in range(500)}
    resp = post(warm, orjson.dumps({**CHAT, **extra}))
    assert resp.status_code == 200, resp.text[:500]
    assert resp.json()["usage"]["completion_tokens"] <= 4


def test_a_wrong_content_type_is_read_as_json_or_refused_as_invalid_json(warm: Server) -> None:
    # curl -d sends application/x-www-form-urlencoded: a JSON body is still read as JSON.
    resp = post(warm, orjson.dumps(CHAT), **{"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text[:500]
    refused(
        post(warm, b"model=smollm2&prompt=hi", **{"content-type": "text/plain"}), 400, says="not valid JSON"
    )
    refused(post(warm, b"\x00\x01binary", **{"content-type": "application/octet-stream"}), 400, says="JSON")


def test_a_request_the_http_parser_refuses_gets_an_openai_error_too(server: Server) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nbad header name: 1\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/json" in head.lower()
    assert ErrorBody.model_validate_json(body).error.type == "invalid_request_error"


def test_hostile_bodies_leave_the_server_memory_bounded(warm: Server) -> None:
    before = rss(warm)
    big = b'{"model":"smollm2","prompt":"' + b"y" * (10 * MB) + b'"}'
    many = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "m"}] * 3000})
    for _ in range(10):
        for body in (big, nested(10_000), many, b"\xff" * MB):
            assert post(warm, body, path="/completions").status_code < 500
            assert post(warm, body).status_code < 500
    grown = (rss(warm) - before) / MB
    assert grown < 50, f"RSS grew by {grown:.0f} MB after 80 hostile requests"
