"""GET /metrics: what requests did, counted per model, route, status and stage, with bounded labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmdock.config import ModelConfig, Settings
from llmdock.config.monitor_settings import MetricsSettings
from llmdock.monitor.metrics import INSTRUMENTS, Tally, tally_record
from llmdock.store.trace_records import SpanRecord, TraceRecord
from tests.conftest import Gateway

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_tokens_stages_and_first_tokens(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    small = ModelConfig(backend="fake", context_window=64)
    gateway: Gateway = await gateway_factory(make_settings(models={"fake": small}))
    for _ in range(2):
        assert (await gateway.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    streamed = await gateway.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert streamed.status_code == 200
    too_long = [{"role": "user", "content": "word " * 200}]
    bad = await gateway.client.post("/v1/chat/completions", json={**CHAT, "messages": too_long})
    assert bad.status_code == 400
    resp = await gateway.client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    found = samples(resp.text)
    ok = value(found, "llmdock_requests_total", model="fake", deployment="fake", route="chat", status="200")
    assert ok == 3
    failed = value(found, "llmdock_requests_total", model="fake", deployment="", route="chat", status="400")
    assert failed == 1
    code = bad.json()["error"]["code"]
    assert value(found, "llmdock_request_errors_total", model="fake", route="chat", code=code) == 1
    assert value(found, "llmdock_tokens_total", model="fake", direction="output") > 0
    assert value(found, "llmdock_stage_duration_seconds_count", model="fake", stage="generate") >= 3
    assert value(found, "llmdock_time_to_first_token_seconds_count", model="fake") == 1
    assert value(found, "llmdock_request_duration_seconds_count", model="fake", route="chat") >= 3
    assert value(found, "llmdock_breaker_state", model="fake", deployment="fake") == 0
    assert (
        value(found, "llmdock_cache_lookups_total", model="fake", result="skip")
        + value(found, "llmdock_cache_lookups_total", model="fake", result="miss")
        >= 1
    )


async def test_no_user_key_or_prompt_text_becomes_a_label(gateway: Gateway) -> None:
    body = {**CHAT, "user": "alice@example.com", "messages": [{"role": "user", "content": "zebra-4411"}]}
    assert (await gateway.client.post("/v1/chat/completions", json=body)).status_code == 200
    text = (await gateway.client.get("/metrics")).text
    assert "llmdock_requests_total" in text
    assert "alice" not in text
    assert "zebra-4411" not in text
    for family in text_string_to_metric_families(text):
        if family.name.startswith("llmdock_"):
            declared = {n for name, (_, _, labels) in INSTRUMENTS.items() for n in labels}
            for s in family.samples:
                assert set(s.labels) - {"le"} <= declared


async def test_metrics_off_means_no_route_and_no_tally(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(make_settings(metrics=MetricsSettings(enabled=False)))
    assert (await gw.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    resp = await gw.client.get("/metrics")
    assert resp.status_code == 404
    assert "metrics.enabled" in resp.json()["error"]["message"]
    assert gw.runtime.metrics is None
    assert gw.runtime.sink.observers == []


def test_a_guard_span_counts_its_verdict_and_a_failure_its_code() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    rec = TraceRecord(
        id="t",
        created_at=now,
        operation="chat",
        model="m",
        status="error",
        duration_ms=3.0,
        http_status=400,
        error="guard_blocked: Blocked by the injection guard",
        spans=[
            SpanRecord("guard_in.injection", now, 1.0, "ok", {"flagged": True, "action": "block"}),
            SpanRecord("guard_in.pii", now, 0.2, "ok", {"flagged": False, "action": "none"}),
            SpanRecord(
                "guard_in.toxicity", now, 0.2, "error", {"flagged": False, "action": "none", "error": "x"}
            ),
        ],
    )
    t = Tally()
    tally_record(t, rec)
    assert t.counters[("llmdock_guard_verdicts_total", ("guard_in", "injection", "block"))] == 1
    assert t.counters[("llmdock_guard_verdicts_total", ("guard_in", "pii", "pass"))] == 1
    assert t.counters[("llmdock_guard_verdicts_total", ("guard_in", "toxicity", "error"))] == 1
    assert t.counters[("llmdock_request_errors_total", ("m", "chat", "guard_blocked"))] == 1
    row = t.histograms[("llmdock_stage_duration_seconds", ("m", "guard_in.injection"))]
    assert row[0] == pytest.approx(0.001)
    assert sum(row[1:]) == 1
