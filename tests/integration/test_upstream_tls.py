"""The openai_compat backend against an HTTPS upstream (a real TLS server on loopback), and through a proxy.

Non-streamed calls go through llmdock's own keep-alive pool (backends/http1.py), streams through httpx: both
must apply the same TLS policy (trusted CA file, or refusal of an unknown certificate).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmdock.config import ModelConfig, Settings
from tests.conftest import Gateway, self_signed_cert
from tests.unit.test_gateway_api import sse_events
from tests.upstream import Upstream

pytestmark = pytest.mark.server
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_upstream(tls_files: tuple[Path, Path]) -> Iterator[Upstream]:
    up = Upstream("secure", tls=tls_files)
    yield up
    up.stop()


def remote(url: str, **extra: Any) -> ModelConfig:
    return ModelConfig(backend="openai_compat", base_url=url, upstream_model="m", retries=0, **extra)


async def test_https_upstream_with_a_trusted_ca_plain_and_streamed(
    tls_upstream: Upstream,
    tls_files: tuple[Path, Path],
    gateway_factory: Callable[[Settings], Any],
    make_settings: Callable[..., Settings],
) -> None:
    cert = str(tls_files[0])
    models = {
        "trusted": remote(tls_upstream.url, tls_ca_file=cert),
        "untrusted": remote(tls_upstream.url, connect_timeout_s=2),
        "unverified": remote(tls_upstream.url, tls_verify=False),
    }
    gw: Gateway = await gateway_factory(
        make_settings(models=models, default_embedding_model="", default_model="")
    )
    for _ in range(3):  # kept-alive TLS connection reused
        ok = await gw.client.post("/v1/chat/completions", json={"model": "trusted", **CHAT})
        assert ok.status_code == 200, ok.text
        assert "secure" in ok.json()["choices"][0]["message"]["content"]
    streamed = await gw.client.post("/v1/chat/completions", json={"model": "trusted", "stream": True, **CHAT})
    assert streamed.status_code == 200
    assert any(e.get("choices") for e in sse_events(streamed.text))
    for stream in (False, True):
        refused = await gw.client.post(
            "/v1/chat/completions", json={"model": "untrusted", "stream": stream, **CHAT}
        )
        assert refused.status_code == 503, refused.text
        assert "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"]["message"]
    assert (
        await gw.client.post("/v1/chat/completions", json={"model": "unverified", **CHAT})
    ).status_code == 200


def test_a_missing_ca_file_is_a_config_error(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    from llmdock.errors import ConfigError
    from llmdock.runtime import Runtime

    settings = make_settings(
        models={"r": remote("https://127.0.0.1:1/v1", tls_ca_file=str(tmp_path / "no.pem"))}
    )
    with pytest.raises(ConfigError, match="CA file .* does not exist"):
        Runtime(settings, with_store=False)


async def test_calls_go_through_the_configured_proxy(
    monkeypatch: pytest.MonkeyPatch,
    gateway_factory: Callable[[Settings], Any],
    make_settings: Callable[..., Settings],
) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        seen.append(head.split(b"\r\n")[0])
        body = b'{"choices": [{"message": {"role": "assistant", "content": "via proxy"}, "finish_reason": "stop"}]}'
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    gw: Gateway = await gateway_factory(
        make_settings(
            models={"far": remote("http://upstream.example:8080/v1")},
            default_embedding_model="",
            default_model="",
        )
    )
    resp = await gw.client.post("/v1/chat/completions", json={"model": "far", **CHAT})
    server.close()
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "via proxy"
    assert seen == [b"POST http://upstream.example:8080/v1/chat/completions HTTP/1.1"]
