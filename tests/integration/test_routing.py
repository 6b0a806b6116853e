"""The router against real HTTP upstreams: strategies, fallbacks on each trigger, breakers, backpressure."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmdock.config import ModelConfig, Settings, load_settings
from llmdock.errors import ConfigError
from llmdock.plugins import load_plugins
from llmdock.runtime import build_backends
from tests.conftest import Gateway, free_port
from tests.unit.test_gateway_api import sse_events
from tests.upstream import Upstream

MakeGateway = Callable[[Settings], Any]


@pytest.fixture
def upstreams() -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def make(name: str, mode: str = "ok", delay: float = 0.0) -> Upstream:
        up = Upstream(name, mode, delay)
        started.append(up)
        return up

    yield make
    for up in started:
        up.stop()


def dep(up: Upstream | str, **extra: Any) -> dict[str, Any]:
    url = up if isinstance(up, str) else up.url
    return {
        "backend": "openai_compat",
        "base_url": url,
        "upstream_model": "m",
        "connect_timeout_s": 1,
        **extra,
    }


def model(*deployments: dict[str, Any], **extra: Any) -> ModelConfig:
    return ModelConfig(deployments=list(deployments), **extra)


async def gateway(
    factory: MakeGateway, make_settings: Callable[..., Settings], **models: ModelConfig
) -> Gateway:
    gw: Gateway = await factory(
        make_settings(models=models, default_model=next(iter(models)), default_embedding_model="")
    )
    return gw


def ask(name: str = "m", stream: bool = False) -> dict[str, Any]:
    return {"model": name, "messages": [{"role": "user", "content": "hello"}], "stream": stream}


async def answer(gw: Gateway, name: str = "m") -> str:
    resp = await gw.client.post("/v1/chat/completions", json=ask(name))
    assert resp.status_code == 200, resp.text
    return str(resp.json()["choices"][0]["message"]["content"])


# --- strategies ------------------------------------------------------------------------------------------


async def test_weighted_routing_follows_the_weights(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    a, b = upstreams("a"), upstreams("b")
    gw = await gateway(gateway_factory, make_settings, m=model(dep(a, weight=3), dep(b, weight=1)))
    for _ in range(400):
        await answer(gw)
    assert 0.68 < a.hits / 400 < 0.82


async def test_round_robin_alternates(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    a, b = upstreams("a"), upstreams("b")
    gw = await gateway(gateway_factory, make_settings, m=model(dep(a), dep(b), routing="round-robin"))
    replies = [await answer(gw) for _ in range(6)]
    assert len(set(replies[0::2])) == 1
    assert len(set(replies[1::2])) == 1
    assert replies[0] != replies[1]


async def test_least_busy_avoids_the_deployment_with_requests_in_flight(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    slow, fast = upstreams("slow", delay=0.4), upstreams("fast")
    gw = await gateway(gateway_factory, make_settings, m=model(dep(slow), dep(fast), routing="least-busy"))
    replies = await asyncio.gather(*(answer(gw) for _ in range(3)))
    more = [await answer(gw) for _ in range(5)]  # nothing in flight now: ties broken at random
    assert replies.count("reply from slow") <= 2
    assert slow.hits + fast.hits == 8
    assert len(more) == 5


async def test_lowest_latency_prefers_the_faster_deployment(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    slow, fast = upstreams("slow", delay=0.05), upstreams("fast")
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(slow), dep(fast), routing="lowest-latency")
    )
    replies = [await answer(gw) for _ in range(30)]
    assert replies[-20:].count("reply from fast") == 20


async def test_lowest_cost_picks_the_cheapest(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    dear, cheap = upstreams("dear"), upstreams("cheap")
    gw = await gateway(
        gateway_factory,
        make_settings,
        m=model(
            dep(dear, price={"input_per_1m": 5, "output_per_1m": 15}),
            dep(cheap, price={"input_per_1m": 0.1, "output_per_1m": 0.4}),
            routing="lowest-cost",
        ),
    )
    assert {await answer(gw) for _ in range(10)} == {"reply from cheap"}


async def test_priority_groups_are_tried_in_order(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    first, backup = upstreams("first", "500"), upstreams("backup")
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(backup, priority=1), dep(first, priority=0))
    )
    assert await answer(gw) == "reply from backup"
    assert first.hits == 1


# --- fallbacks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", ["down", "timeout", "500", "429", "policy", "context"])
async def test_falls_back_to_another_model_on(
    trigger: str,
    upstreams: Callable[..., Upstream],
    gateway_factory: MakeGateway,
    make_settings: Callable[..., Settings],
) -> None:
    backup = upstreams("backup")
    if trigger == "down":
        primary = dep(f"http://127.0.0.1:{free_port()}/v1")
    elif trigger == "timeout":
        primary = dep(upstreams("primary", delay=2.0), timeout={"total_s": 0.2})
    else:
        primary = dep(upstreams("primary", trigger))
    gw = await gateway(
        gateway_factory,
        make_settings,
        m=model(primary, fallbacks=["b"], retries=1, retry_backoff_s=0.01, max_retry_after_s=1),
        b=model(dep(backup)),
    )
    resp = await gw.client.post("/v1/chat/completions", json=ask())
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "reply from backup"
    gw.flush_traces()
    from llmdock.store import get_trace

    assert gw.runtime.store is not None
    trace, _ = get_trace(gw.runtime.store, resp.headers["x-llmdock-trace-id"])
    assert trace.attributes["llmdock.served_by_model"] == "b"


async def test_context_window_falls_back_to_a_larger_window(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    small, large = upstreams("small"), upstreams("large")
    gw = await gateway(
        gateway_factory,
        make_settings,
        m=model(dep(small, context_window=20), fallbacks=["big"]),
        big=model(dep(large, context_window=100_000)),
    )
    long = {"model": "m", "messages": [{"role": "user", "content": "word " * 200}]}
    resp = await gw.client.post("/v1/chat/completions", json=long)
    assert resp.json()["choices"][0]["message"]["content"] == "reply from large"
    assert small.hits == 0
    assert await answer(gw) == "reply from small"  # short prompts stay on the small one


async def test_without_fallback_the_last_error_is_returned(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(upstreams("x", "500")), retries=2, retry_backoff_s=0.01)
    )
    resp = await gw.client.post("/v1/chat/completions", json=ask())
    assert resp.status_code == 502
    assert "x is broken" in resp.json()["error"]["message"]


async def test_retry_after_longer_than_allowed_is_not_waited_for(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(upstreams("busy", "429")), retries=3, max_retry_after_s=1)
    )
    resp = await gw.client.post("/v1/chat/completions", json=ask())
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "30"


# --- breaker, health, failover under load -----------------------------------------------------------------


async def test_breaker_opens_half_opens_and_closes(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    flaky, steady = upstreams("flaky", "500"), upstreams("steady")
    gw = await gateway(
        gateway_factory,
        make_settings,
        m=model(dep(flaky, priority=0), dep(steady, priority=1), breaker={"failures": 2, "cooldown_s": 0.3}),
    )
    for _ in range(2):
        assert await answer(gw) == "reply from steady"
    state = (await gw.client.get("/v1/deployments")).json()["data"][0]["deployments"][0]
    assert state["breaker"]["state"] == "open"
    hits = flaky.hits
    for _ in range(5):
        assert await answer(gw) == "reply from steady"
    assert flaky.hits == hits  # open: not tried at all
    flaky.mode = "ok"
    await asyncio.sleep(0.35)  # cooldown over: half-open, one probe
    assert await answer(gw) == "reply from flaky"
    state = (await gw.client.get("/v1/deployments")).json()["data"][0]["deployments"][0]
    assert state["breaker"]["state"] == "closed"


async def test_active_health_checks_open_the_breaker_without_traffic(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    sick = upstreams("sick", "500")
    gw = await gateway(
        gateway_factory,
        make_settings,
        m=model(dep(sick), health_check_interval_s=0.05, breaker={"failures": 2, "cooldown_s": 60}),
    )
    await asyncio.sleep(0.4)
    state = (await gw.client.get("/v1/deployments")).json()["data"][0]["deployments"][0]
    assert state["breaker"]["state"] == "open"
    assert sick.hits == 0
    resp = await gw.client.post("/v1/chat/completions", json=ask())
    assert resp.status_code == 503
    assert "retry-after" in resp.headers


async def test_killing_one_of_two_upstreams_under_load_fails_no_request(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    a, b = upstreams("a", delay=0.005), upstreams("b", delay=0.005)
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(a), dep(b), retries=2, retry_backoff_s=0.01)
    )
    statuses: collections.Counter[int] = collections.Counter()

    async def client(n: int) -> None:
        for _ in range(n):
            statuses[(await gw.client.post("/v1/chat/completions", json=ask())).status_code] += 1

    load = asyncio.gather(*(client(30) for _ in range(8)))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(b.stop)
    await load
    assert statuses == {200: 240}
    assert b.hits > 0  # b really served part of the load before it died


async def test_stream_fails_over_before_the_first_token(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    broken, good = upstreams("broken", "500"), upstreams("good")
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(broken, priority=0), dep(good, priority=1))
    )
    resp = await gw.client.post("/v1/chat/completions", json=ask(stream=True))
    assert resp.status_code == 200
    events = sse_events(resp.text)
    text = "".join(
        e["choices"][0]["delta"].get("content", "") for e in events if e != "[DONE]" and e["choices"]
    )
    assert text == "reply from good"
    assert broken.hits == 1


async def test_an_error_after_the_first_token_ends_the_stream_with_an_error_event(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    dying, spare = upstreams("dying", "cut"), upstreams("spare")
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(dying, priority=0), dep(spare, priority=1))
    )
    resp = await gw.client.post("/v1/chat/completions", json=ask(stream=True))
    assert resp.status_code == 200  # the first token was already on its way
    events = sse_events(resp.text)
    assert events[1]["choices"][0]["delta"]["content"] == "reply"
    assert "error" in events[-1]
    assert "[DONE]" not in events
    assert spare.hits == 0  # no failover once the client has tokens: it would repeat them


async def test_stream_with_every_deployment_down_is_an_http_error(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(f"http://127.0.0.1:{free_port()}/v1"), retries=0)
    )
    resp = await gw.client.post("/v1/chat/completions", json=ask(stream=True))
    assert resp.status_code == 503


# --- backpressure and limits ------------------------------------------------------------------------------


async def test_full_deployments_answer_503_with_retry_after(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await gateway(
        gateway_factory, make_settings, m=model(dep(upstreams("slow", delay=0.3), max_in_flight=1))
    )
    results = await asyncio.gather(*(gw.client.post("/v1/chat/completions", json=ask()) for _ in range(3)))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 503, 503]
    assert all(r.headers.get("retry-after") for r in results if r.status_code == 503)


async def test_rpm_limit_answers_429_with_retry_after(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw = await gateway(gateway_factory, make_settings, m=model(dep(upstreams("u"), rpm=2)))
    assert await answer(gw) == "reply from u"
    assert await answer(gw) == "reply from u"
    resp = await gw.client.post("/v1/chat/completions", json=ask())
    assert resp.status_code == 429
    assert 0 < int(resp.headers["retry-after"]) <= 60


# --- config errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "where", "message"),
    [
        (
            "models:\n  m:\n    deployments:\n      - backend: fake\n        weight: -1\n",
            ":8: models.m.deployments.0.weight",
            "greater than or equal to 0",
        ),
        (
            "models:\n  m:\n    deployments:\n      - backend: warp\n",
            ":7: models.m.deployments.0.backend",
            "unknown backend",
        ),
        (
            "models:\n  a: {backend: fake, fallbacks: [b]}\n  b: {backend: fake, fallbacks: [a]}\n",
            "models.b.fallbacks.0",
            "cycle: a -> b -> a",
        ),
        (
            "models:\n  a:\n    backend: fake\n    fallbacks: [nope]\n",
            ":7: models.a.fallbacks.0",
            "not a configured model",
        ),
    ],
)
def test_bad_routing_config_names_file_line_and_field(
    tmp_path: Path, yaml_text: str, where: str, message: str
) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        "include_builtin_models: false\ndefault_model: ''\ndefault_embedding_model: ''\n" + yaml_text
    )
    with pytest.raises(ConfigError) as info:
        build_backends(load_settings(cfg), load_plugins())
    assert where in (info.value.where or "")
    assert message in info.value.message
