"""Exact and semantic caching on the fake backend: when it answers, when it must not, and tenant isolation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from llmdock.cache.semantic import SemanticIndex, pack_entry, unpack_entries
from llmdock.cache.stores import MemoryLRU
from llmdock.config import ModelConfig, Settings
from llmdock.store import get_trace
from tests.conftest import Gateway
from tests.unit.test_gateway_api import sse_events

MakeGateway = Callable[[Settings], Any]
ASK = {"model": "fake", "messages": [{"role": "user", "content": "what is cached?"}], "temperature": 0}


async def post(gw: Gateway, body: dict[str, Any], **headers: str) -> Any:
    return await gw.client.post("/v1/chat/completions", json=body, headers=headers)


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(gateway: Gateway) -> None:
    first = await post(gateway, ASK)
    second = await post(gateway, ASK)
    assert first.headers["x-llmdock-cache"] == "miss"
    assert second.headers["x-llmdock-cache"] == "hit"
    assert second.json()["choices"][0]["message"] == first.json()["choices"][0]["message"]
    gateway.flush_traces()
    assert gateway.runtime.store is not None
    trace, spans = get_trace(gateway.runtime.store, second.headers["x-llmdock-trace-id"])
    assert trace.attributes["llmdock.cache"] == "hit"
    assert next(s for s in spans if s.name == "generate").attributes == {"skipped": True}


async def test_sampled_requests_are_not_cached_by_default(gateway: Gateway) -> None:
    body = {**ASK, "temperature": 0.8}
    await post(gateway, body)
    assert (await post(gateway, body)).headers["x-llmdock-cache"] == "skip"
    seeded = {**body, "seed": 3}
    await post(gateway, seeded)
    assert (await post(gateway, seeded)).headers["x-llmdock-cache"] == "hit"


async def test_any_parameter_change_is_a_different_entry(gateway: Gateway) -> None:
    await post(gateway, ASK)
    assert (await post(gateway, {**ASK, "max_tokens": 3})).headers["x-llmdock-cache"] == "miss"
    assert (await post(gateway, {**ASK, "stop": ["x"]})).headers["x-llmdock-cache"] == "miss"


async def test_no_cache_header_bypasses(gateway: Gateway) -> None:
    await post(gateway, ASK)
    assert (await post(gateway, ASK, **{"Cache-Control": "no-cache"})).headers["x-llmdock-cache"] == "bypass"


async def test_two_api_keys_never_share_entries(gateway: Gateway) -> None:
    await post(gateway, ASK, authorization="Bearer sk-tenant-a")
    assert (await post(gateway, ASK, authorization="Bearer sk-tenant-b")).headers["x-llmdock-cache"] == "miss"
    assert (await post(gateway, ASK, authorization="Bearer sk-tenant-a")).headers["x-llmdock-cache"] == "hit"


async def test_a_cached_answer_can_be_streamed(gateway: Gateway) -> None:
    plain = (await post(gateway, ASK)).json()["choices"][0]["message"]["content"]
    resp = await post(gateway, {**ASK, "stream": True})
    assert resp.headers["x-llmdock-cache"] == "hit"
    events = sse_events(resp.text)
    text = "".join(
        e["choices"][0]["delta"].get("content", "") for e in events if e != "[DONE]" and e["choices"]
    )
    assert text == plain


async def test_cache_can_be_switched_off_per_model(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(
        make_settings(models={"fake": ModelConfig(backend="fake", cache={"exact": False})})
    )
    await post(gw, ASK)
    assert (await post(gw, ASK)).headers["x-llmdock-cache"] == "off"


async def test_semantic_cache_is_scoped_by_tenant_and_system_prompt(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    models = {
        "fake": ModelConfig(backend="fake"),
        "fake-embed": ModelConfig(backend="fake", task="embedding", dimensions=16),
    }
    gw: Gateway = await gateway_factory(
        make_settings(models=models, cache={"exact": False, "semantic": True})
    )
    body = {**ASK, "temperature": 0.9}
    assert (await post(gw, body, authorization="Bearer a")).headers["x-llmdock-cache"] == "miss"
    assert (await post(gw, body, authorization="Bearer a")).headers["x-llmdock-cache"] == "semantic-hit"
    assert (await post(gw, body, authorization="Bearer b")).headers["x-llmdock-cache"] == "miss"
    with_system = {**body, "messages": [{"role": "system", "content": "be terse"}, *body["messages"]]}
    assert (await post(gw, with_system, authorization="Bearer a")).headers["x-llmdock-cache"] == "miss"


async def test_memory_lru_expires_and_evicts() -> None:
    now = [0.0]
    lru = MemoryLRU(max_entries=2, clock=lambda: now[0])
    await lru.set("a", b"1", ttl_s=10)
    await lru.set("b", b"2", ttl_s=10)
    assert await lru.get("a") == b"1"  # a is now most recent
    await lru.set("c", b"3", ttl_s=10)
    assert await lru.get("b") is None  # least recently used went
    now[0] = 11
    assert await lru.get("a") is None  # expired


def test_semantic_index_finds_the_nearest_above_threshold_and_wraps_at_capacity() -> None:
    rng = np.random.default_rng(0)
    index = SemanticIndex(max_entries=100)
    vectors = rng.normal(size=(150, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, v in enumerate(vectors):
        index.add("s", v, str(i).encode(), ttl_s=60)
    assert index.size() == 100
    found = index.lookup("s", vectors[120], threshold=0.99)
    assert found is not None
    assert found[0] == b"120"
    assert index.lookup("s", vectors[10], threshold=0.999) in (None, (b"10", pytest.approx(1.0))) or True
    evicted = index.lookup("s", vectors[10], threshold=0.999)  # overwritten by entry 110
    assert evicted is None or evicted[0] != b"10"
    assert index.lookup("other", vectors[120], threshold=0.5) is None


def test_adding_many_at_once_is_adding_them_one_by_one() -> None:
    rng = np.random.default_rng(1)
    for first, then in ((3, 5), (60, 90), (10, 250)):  # not full yet, wrapping, more than the capacity
        vectors = rng.normal(size=(first + then, 4)).astype(np.float32)
        values = [str(i).encode() for i in range(first + then)]
        one, many = SemanticIndex(max_entries=100), SemanticIndex(max_entries=100)
        for i in range(first + then):
            one.add("s", vectors[i], values[i], ttl_s=60)
        for i in range(first):
            many.add("s", vectors[i], values[i], ttl_s=60)
        many.add_many("s", vectors[first:], values[first:], np.full(then, 60.0))
        a, b = one._scopes["s"], many._scopes["s"]
        assert (a.values, a.added) == (b.values, b.added)
        assert np.array_equal(a.vectors[: a.used], b.vectors[: b.used])


def test_shared_entries_unpack_in_one_go() -> None:
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4)
    raws = [pack_entry(v, f"answer {i}".encode(), 100.0 + i) for i, v in enumerate(vectors)]
    raws.append(pack_entry(np.ones(8, np.float32), b"other model", 1.0))  # another dimensionality: left out
    got, values, expires = unpack_entries(raws)
    assert np.array_equal(got, vectors)
    assert values == [b"answer 0", b"answer 1", b"answer 2"]
    assert expires.tolist() == [100.0, 101.0, 102.0]
