"""A half-open breaker's probe, whatever way it ends, leaves the breaker able to decide again.

Against real HTTP upstreams (tests/upstream.py) through the in-process gateway, passive breakers only
(no health checks), so nothing but the probes themselves can close a breaker again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from llmdock.config import Settings
from tests.integration.test_routing import MakeGateway, answer, ask, dep, gateway, model, upstreams
from tests.unit.test_gateway_api import sse_events
from tests.upstream import Upstream

__all__ = ["upstreams"]  # the fixture, used by name below

BREAKER = {"failures": 1, "cooldown_s": 0.2}


async def breaker_of(gw: Any, index: int = 0) -> dict[str, Any]:
    data = (await gw.client.get("/v1/deployments")).json()["data"][0]
    state: dict[str, Any] = data["deployments"][index]["breaker"]
    return state


async def test_a_probe_refused_for_its_content_does_not_keep_the_breaker_half_open(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    x = upstreams("x", "500")
    gw = await gateway(gateway_factory, make_settings, m=model(dep(x), breaker=BREAKER, retries=0))
    assert (await gw.client.post("/v1/chat/completions", json=ask())).status_code == 502
    assert (await breaker_of(gw))["state"] == "open"
    await asyncio.sleep(0.25)
    x.mode = "context"  # the probe is answered, with a refusal no deployment of this model could fix
    assert (await gw.client.post("/v1/chat/completions", json=ask())).status_code == 400
    x.mode = "ok"
    assert await answer(gw) == "reply from x"
    assert (await breaker_of(gw))["state"] == "closed"


async def test_a_probe_whose_client_went_away_frees_its_slot(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    x = upstreams("x", "500")
    gw = await gateway(gateway_factory, make_settings, m=model(dep(x), breaker=BREAKER, retries=0))
    assert (await gw.client.post("/v1/chat/completions", json=ask())).status_code == 502
    await asyncio.sleep(0.25)
    x.mode, x.delay = "ok", 1.0
    probe = gw.client.post("/v1/chat/completions", json=ask())
    try:
        await asyncio.wait_for(probe, 0.2)  # the client gives up while the probe waits for its answer
    except TimeoutError:
        pass
    else:
        raise AssertionError("the probe should still have been waiting")
    x.delay = 0.0
    assert await answer(gw) == "reply from x"


async def test_a_probe_stream_cut_after_its_first_token_reopens_the_breaker(
    upstreams: Callable[..., Upstream], gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    dying, spare = upstreams("dying", "cut"), upstreams("spare")
    gw = await gateway(
        gateway_factory,
        make_settings,
        m=model(dep(dying, priority=0), dep(spare, priority=1), breaker={"failures": 3, "cooldown_s": 0.2}),
    )
    for _ in range(3):  # three streams cut mid-way open the breaker
        events = sse_events((await gw.client.post("/v1/chat/completions", json=ask(stream=True))).text)
        assert "error" in events[-1]
    assert (await breaker_of(gw))["state"] == "open"
    await asyncio.sleep(0.25)
    probe = sse_events((await gw.client.post("/v1/chat/completions", json=ask(stream=True))).text)
    assert "error" in probe[-1]  # the probe went to the dying deployment and was cut too
    # A probe is judged by how its stream ends, not by its first token: one cut probe reopens the breaker,
    # and the next clients get the spare's whole answer instead of the dying one's first word.
    assert (await breaker_of(gw))["state"] == "open"
    hits = dying.hits
    for _ in range(3):
        events = sse_events((await gw.client.post("/v1/chat/completions", json=ask(stream=True))).text)
        assert events[-1] == "[DONE]"
    assert dying.hits == hits
