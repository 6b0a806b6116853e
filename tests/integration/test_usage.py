"""Token counts and cost land on each trace; `llmdock usage` sums them by day, model and deployment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.store.usage import usage_summary
from tests.conftest import Gateway

MakeGateway = Callable[[Settings], Any]


@pytest.fixture
def priced(db_url: str, make_settings: Callable[..., Settings]) -> Iterator[Settings]:
    cheap = {"backend": "fake", "name": "cheap", "price": {"input_per_1m": 1.0, "output_per_1m": 2.0}}
    dear = {"backend": "fake", "name": "dear", "price": {"input_per_1m": 10.0, "output_per_1m": 20.0}}
    return make_settings(
        database_url=db_url,
        models={"m": ModelConfig(deployments=[cheap, dear], routing="round-robin")},
        default_model="m",
        default_embedding_model="",
    )


async def test_cost_is_recorded_per_trace_and_summed_by_deployment(
    priced: Settings, gateway_factory: MakeGateway
) -> None:
    gw: Gateway = await gateway_factory(priced)
    for i in range(4):
        body = {"model": "m", "messages": [{"role": "user", "content": f"question {i}"}], "temperature": 0.5}
        assert (await gw.client.post("/v1/chat/completions", json=body)).status_code == 200
    stream = {
        "model": "m",
        "messages": [{"role": "user", "content": "streamed"}],
        "stream": True,
        "temperature": 0,
    }
    await gw.client.post("/v1/chat/completions", json=stream)
    hit = await gw.client.post("/v1/chat/completions", json={**stream, "stream": False})
    assert hit.headers["x-llmdock-cache"] == "hit"
    gw.flush_traces()
    assert gw.runtime.store is not None
    rows = usage_summary(gw.runtime.store, days=1)
    by_dep = {r.deployment: r for r in rows}
    assert set(by_dep) == {"cheap", "dear", ""}  # "" = answered from the cache, no deployment
    assert by_dep[""].cache_hits == 1
    assert by_dep[""].cost == 0
    for name, (pin, pout) in {"cheap": (1.0, 2.0), "dear": (10.0, 20.0)}.items():
        r = by_dep[name]
        assert r.cost == pytest.approx((r.prompt_tokens * pin + r.completion_tokens * pout) / 1e6)
        assert r.completion_tokens > 0
    assert sum(r.requests for r in rows) == 6


async def test_usage_cli_prints_the_summary(
    tmp_path: Path, gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(make_settings())  # SQLite in tmp_path, fake models
    for i in range(3):
        await gw.client.post(
            "/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": str(i)}]}
        )
    gw.flush_traces()
    env = {**os.environ, "LLMDOCK_HOME": str(tmp_path), "COLUMNS": "200"}

    def llmdock(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmdock", *args], capture_output=True, text=True, env=env, timeout=60
        )

    out = await asyncio.to_thread(llmdock, "usage", "--json")
    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)
    assert (row["model"], row["deployment"], row["requests"]) == ("fake", "fake", 3)
    table = await asyncio.to_thread(llmdock, "usage")
    assert "deployment" in table.stdout
    assert "total" in table.stdout
