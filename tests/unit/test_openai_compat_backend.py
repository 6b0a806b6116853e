"""The openai_compat backend without an upstream: how its failures read, over both HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from llmdock.backends.base import Backend, GenerationRequest, SamplingParams
from llmdock.config import load_settings
from llmdock.errors import BackendUnavailable, ConfigError
from llmdock.plugins import load_plugins
from llmdock.runtime import build_backends
from tests.conftest import free_port


@pytest.fixture
async def backend_at(tmp_path: Path) -> AsyncIterator[Callable[[str], Backend]]:
    made: list[Backend] = []

    def make(base_url: str) -> Backend:
        cfg = tmp_path / "llmdock.yaml"
        cfg.write_text(
            f"models:\n  mine:\n    backend: openai_compat\n    base_url: {base_url}\n    connect_timeout_s: 2\n"
        )
        backend = build_backends(load_settings(cfg), load_plugins())["mine"].deployments[0].backend
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


def chat() -> GenerationRequest:
    return GenerationRequest("chat", SamplingParams(), messages=[{"role": "user", "content": "hi"}])


async def test_an_unreachable_upstream_reads_the_same_on_every_call_path(
    backend_at: Callable[[str], Backend],
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    backend: Backend = backend_at(url)
    with pytest.raises(BackendUnavailable, match="^upstream unreachable: ") as plain:
        await backend.generate(chat())
    with pytest.raises(BackendUnavailable, match="^upstream unreachable: ") as streamed:
        await anext(aiter(backend.stream(chat())))
    with pytest.raises(BackendUnavailable, match="^upstream unreachable: ") as health:
        await backend.health()
    assert plain.value.where == streamed.value.where == health.value.where == f"upstream {url}"


async def test_a_base_url_that_is_not_http_is_a_config_error(backend_at: Callable[[str], Backend]) -> None:
    backend: Backend = backend_at("ftp://example.invalid/v1")
    with pytest.raises(ConfigError, match="not an http") as info:
        await backend.generate(chat())
    assert "models.mine.base_url" in (info.value.where or "")
