"""State shared through a real redis-server: the exact cache and rpm limits across gateway workers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmdock.config import ModelConfig, Settings
from tests.conftest import Gateway, free_port
from tests.integration.conftest import start_server, stop_server
from tests.redisserver import RedisServer, redis_server_or_skip

pytestmark = pytest.mark.redis
MakeGateway = Callable[[Settings], Any]
ASK = {"model": "fake", "messages": [{"role": "user", "content": "shared?"}], "temperature": 0}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_or_skip()


async def test_two_workers_share_the_exact_cache(
    redis_server: RedisServer, gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    one: Gateway = await gateway_factory(make_settings(redis_url=redis_server.url))
    two: Gateway = await gateway_factory(make_settings(redis_url=redis_server.url))
    assert (await one.client.post("/v1/chat/completions", json=ASK)).headers["x-llmdock-cache"] == "miss"
    for _ in range(50):  # the write to Redis happens off the response path
        resp = await two.client.post("/v1/chat/completions", json=ASK)
        if resp.headers["x-llmdock-cache"] == "hit":
            break
        await asyncio.sleep(0.02)
    assert resp.headers["x-llmdock-cache"] == "hit"


async def test_two_workers_share_the_semantic_cache_within_a_tenant(
    redis_server: RedisServer, gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    models = {
        "fake": ModelConfig(backend="fake"),
        "fake-embed": ModelConfig(backend="fake", task="embedding"),
    }
    settings = {"redis_url": redis_server.url, "models": models, "cache": {"exact": False, "semantic": True}}
    one: Gateway = await gateway_factory(make_settings(**settings))
    two: Gateway = await gateway_factory(make_settings(**settings))
    body = {**ASK, "temperature": 0.7}
    key_a = {"authorization": "Bearer tenant-a"}
    assert (await one.client.post("/v1/chat/completions", json=body, headers=key_a)).headers[
        "x-llmdock-cache"
    ] == "miss"
    import redis

    probe = redis.Redis.from_url(redis_server.url)
    for _ in range(100):  # the push to Redis happens off the response path
        if probe.keys("llmdock:sem:n:*"):
            break
        await asyncio.sleep(0.01)
    # The first request on the other worker: a hit can only come from what the first worker shared.
    resp = await two.client.post("/v1/chat/completions", json=body, headers=key_a)
    assert resp.headers["x-llmdock-cache"] == "semantic-hit"
    other = await two.client.post(
        "/v1/chat/completions", json=body, headers={"authorization": "Bearer tenant-b"}
    )
    assert other.headers["x-llmdock-cache"] == "miss"


async def test_redis_going_away_degrades_to_in_process_state(
    redis_server: RedisServer, gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    models = {"fake": ModelConfig(backend="fake", rpm=100)}
    gw: Gateway = await gateway_factory(
        make_settings(redis_url=redis_server.url, models=models, default_embedding_model="")
    )
    assert (await gw.client.post("/v1/chat/completions", json=ASK)).status_code == 200
    redis_server.stop()
    resp = await gw.client.post("/v1/chat/completions", json={**ASK, "seed": 1})
    assert resp.status_code == 200
    ready = await gw.client.get("/ready")
    assert ready.status_code == 200  # still serving
    assert ready.json()["redis"]["ok"] is False
    assert ready.json()["redis"]["degraded_to"] == "in-process state"


def test_unreachable_redis_at_start_is_a_one_line_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        f"include_builtin_models: false\ndefault_model: ''\ndefault_embedding_model: ''\nredis_url: redis://127.0.0.1:{free_port()}/0\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "llmdock", "serve", "--config", str(cfg), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert f"{cfg}:4: redis_url" in proc.stderr
    assert "Redis unreachable" in proc.stderr


@pytest.mark.server
def test_rpm_limit_holds_across_two_worker_processes(redis_server: RedisServer, tmp_path: Path) -> None:
    config = f"""
include_builtin_models: false
default_model: fake
default_embedding_model: ''
redis_url: {redis_server.url}
models:
  fake:
    deployments:
      - {{backend: fake, rpm: 4}}
"""
    servers = []
    try:
        for name in ("w1", "w2"):
            home = tmp_path / name
            home.mkdir()
            (home / "llmdock.yaml").write_text(config)
            servers.append(start_server(home, "--config", str(home / "llmdock.yaml")))
        codes = []
        # Redis counts over fixed minutes: six requests that straddle a minute's end would get 4 + 4.
        if time.time() % 60 > 50:
            time.sleep(61 - time.time() % 60)
        for _ in range(3):
            for srv in servers:
                body = {**ASK, "temperature": 0.5}  # not cached: every request reaches the limiter
                codes.append(httpx.post(srv.v1 + "/chat/completions", json=body, timeout=10).status_code)
        assert sorted(codes) == [200, 200, 200, 200, 429, 429]
    finally:
        for srv in servers:
            stop_server(srv)


@pytest.mark.server
def test_serve_with_two_workers_answers_from_both(redis_server: RedisServer, tmp_path: Path) -> None:
    config = f"include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nredis_url: {redis_server.url}\nmodels:\n  fake: {{backend: fake}}\n"
    (tmp_path / "llmdock.yaml").write_text(config)
    srv = start_server(tmp_path, "--config", str(tmp_path / "llmdock.yaml"), "--workers", "2")
    try:
        pids = set()
        for _ in range(60):
            with httpx.Client() as client:  # a new connection each time, so the kernel spreads them
                pids.add(client.get(srv.url + "/health").json()["pid"])
                assert client.post(srv.v1 + "/chat/completions", json=ASK).status_code == 200
            if len(pids) == 2:
                break
        assert len(pids) == 2
    finally:
        stop_server(srv)


async def test_a_breaker_opened_by_one_worker_is_adopted_by_the_other(
    redis_server: RedisServer, gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    from tests.upstream import Upstream

    flaky, steady = Upstream("flaky", "500"), Upstream("steady")
    try:

        def dep(up: Upstream, priority: int) -> dict[str, Any]:
            return {
                "backend": "openai_compat",
                "base_url": up.url,
                "upstream_model": "m",
                "priority": priority,
            }

        model = ModelConfig(
            deployments=[dep(flaky, 0), dep(steady, 1)], breaker={"failures": 2, "cooldown_s": 30}
        )
        settings = {"redis_url": redis_server.url, "models": {"fake": model}, "default_embedding_model": ""}
        one: Gateway = await gateway_factory(make_settings(**settings))
        two: Gateway = await gateway_factory(make_settings(**settings))
        body = {**ASK, "temperature": 0.7}
        for _ in range(2):
            assert (await one.client.post("/v1/chat/completions", json=body)).status_code == 200
        assert flaky.hits == 2  # worker one's breaker is now open
        await asyncio.sleep(0.8)  # worker two syncs breaker state every 0.5 s
        state = (await two.client.get("/v1/deployments")).json()["data"][0]["deployments"][0]
        assert state["breaker"]["state"] == "open"
        resp = await two.client.post("/v1/chat/completions", json=body)
        assert resp.json()["choices"][0]["message"]["content"] == "reply from steady"
        assert flaky.hits == 2  # worker two never tried the dead deployment
    finally:
        flaky.stop()
        steady.stop()


async def test_key_limits_and_budgets_are_shared_by_two_workers(
    redis_server: RedisServer, gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    from llmdock.store.audit import Actor

    priced = ModelConfig(
        deployments=[{"backend": "fake", "price": {"input_per_1m": 1e6, "output_per_1m": 1e6}}]
    )
    settings = {"redis_url": redis_server.url, "models": {"fake": priced}, "default_embedding_model": ""}
    one: Gateway = await gateway_factory(make_settings(**settings, cache={"exact": False}))
    two: Gateway = await gateway_factory(make_settings(**settings, cache={"exact": False}))
    d, actor = one.runtime.auth.directory, Actor("test", "pytest")
    d.create_user("root", actor, role="admin")
    d.create_key("root", actor)
    d.create_user("svc", actor, role="service")
    limited, _ = d.create_key("svc", actor, rpm=3)
    payer, _ = d.create_key("svc", actor, budget=25.0, budget_period="day")
    for gw in (one, two):
        gw.runtime.auth.refresh()
    ask = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    auth = {"authorization": f"Bearer {limited}"}
    codes = [
        (await gw.client.post("/v1/chat/completions", json=ask, headers=auth)).status_code
        for gw in (one, two, one)
    ]
    assert codes == [200, 200, 200]
    over = await two.client.post("/v1/chat/completions", json=ask, headers=auth)
    assert over.status_code == 429  # the fourth request this minute, counted across both workers
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    # Budget: at these prices a request costs its token count; spend is summed in Redis across the workers,
    # so the first refusal comes once the requests of both together reach the budget (each alone never would).
    auth = {"authorization": f"Bearer {payer}"}
    spent, refused_at = 0.0, None
    for i in range(8):
        resp = await (one, two)[i % 2].client.post("/v1/chat/completions", json=ask, headers=auth)
        if resp.status_code == 402:
            refused_at = spent
            break
        assert resp.status_code == 200
        spent += resp.json()["usage"]["total_tokens"]
        await asyncio.sleep(0.05)  # accounting happens just after each response
    assert refused_at is not None
    assert refused_at >= 25.0
    assert refused_at / 2 < 25.0
