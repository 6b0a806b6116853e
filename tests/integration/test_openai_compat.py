"""The openai_compat backend against a real HTTP upstream: another llmdock process serving the fake backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llmdock.config import ModelConfig, Settings
from tests.conftest import Gateway, free_port
from tests.integration.conftest import Server, start_server, stop_server
from tests.unit.test_gateway_api import sse_events

pytestmark = pytest.mark.server

UPSTREAM_CONFIG = """
include_builtin_models: false
default_model: echo
default_embedding_model: echo-embed
models:
  echo: {backend: fake}
  echo-embed: {backend: fake, task: embedding}
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("upstream")
    (home / "llmdock.yaml").write_text(UPSTREAM_CONFIG)
    srv = start_server(home, "--config", str(home / "llmdock.yaml"))
    yield srv
    stop_server(srv)


def remote(url: str, upstream_model: str = "echo", **extra: Any) -> ModelConfig:
    return ModelConfig(backend="openai_compat", base_url=url, upstream_model=upstream_model, **extra)


@pytest.fixture
async def gw(
    upstream: Server, gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> Gateway:
    models = {
        "remote": remote(upstream.v1),
        "remote-embed": remote(upstream.v1, "echo-embed", task="embedding"),
        "remote-missing": remote(upstream.v1, "no-such-model"),
        "remote-down": remote(f"http://127.0.0.1:{free_port()}/v1", connect_timeout_s=1),
    }
    gateway: Gateway = await gateway_factory(
        make_settings(models=models, default_model="remote", default_embedding_model="")
    )
    return gateway


CHAT = {"model": "remote", "messages": [{"role": "user", "content": "over the wire"}], "max_tokens": 50}


async def test_chat_goes_through_the_upstream(gw: Gateway) -> None:
    resp = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    body = resp.json()
    assert body["choices"][0]["message"]["content"] == "fake answer to: over the wire"
    assert body["usage"]["completion_tokens"] == 6  # the upstream's own count


async def test_streaming_goes_through_the_upstream(gw: Gateway) -> None:
    resp = await gw.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = sse_events(resp.text)
    text = "".join(
        e["choices"][0]["delta"].get("content", "") for e in events if e != "[DONE]" and e["choices"]
    )
    assert text == "fake answer to: over the wire"


async def test_completion_and_embeddings_go_through_the_upstream(gw: Gateway) -> None:
    comp = await gw.client.post("/v1/completions", json={"model": "remote", "prompt": "abc", "max_tokens": 9})
    assert comp.json()["choices"][0]["text"] == "fake completion of: abc"
    emb = await gw.client.post("/v1/embeddings", json={"model": "remote-embed", "input": ["x", "y"]})
    assert len(emb.json()["data"]) == 2


async def test_upstream_rejection_becomes_a_clear_400(gw: Gateway) -> None:
    resp = await gw.client.post("/v1/chat/completions", json={**CHAT, "model": "remote-missing"})
    assert resp.status_code == 400
    assert "no-such-model" in resp.json()["error"]["message"]


async def test_unreachable_upstream_is_503_naming_it(gw: Gateway) -> None:
    resp = await gw.client.post("/v1/chat/completions", json={**CHAT, "model": "remote-down"})
    assert resp.status_code == 503
    assert "upstream" in resp.json()["error"]["message"]
    streamed = await gw.client.post(
        "/v1/chat/completions", json={**CHAT, "model": "remote-down", "stream": True}
    )
    assert "upstream unreachable" in streamed.text
