"""Access control through the gateway: the authorization matrix, key lifecycle, limits, budgets, audit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.store.audit import Actor
from tests.conftest import Gateway

ADMIN = Actor("test", "pytest")
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
# (method, path, body, permission the route needs; None = public)
ROUTES: list[tuple[str, str, dict[str, Any] | None, str | None]] = [
    ("GET", "/health", None, None),
    ("GET", "/ready", None, "read"),
    ("GET", "/v1/models", None, "read"),
    ("GET", "/v1/models/fake", None, "read"),
    ("GET", "/openapi.json", None, "read"),
    ("POST", "/v1/chat/completions", CHAT, "inference"),
    ("POST", "/v1/completions", {"model": "fake", "prompt": "hi", "max_tokens": 4}, "inference"),
    ("POST", "/v1/embeddings", {"model": "fake-embed", "input": "hi"}, "inference"),
    ("GET", "/v1/deployments", None, "admin"),
    ("GET", "/admin/traces", None, "observe"),
    ("GET", "/admin/usage", None, "observe"),
    ("GET", "/metrics", None, "observe"),
    ("GET", "/admin/keys", None, "admin"),
    ("GET", "/admin/users", None, "admin"),
    ("GET", "/admin/teams", None, "admin"),
    ("GET", "/admin/audit", None, "admin"),
    ("GET", "/admin/audit/verify", None, "admin"),
    ("POST", "/admin/data/export", {"subject": "nobody"}, "admin"),
    ("GET", "/admin/prompts", None, "admin"),
    ("GET", "/admin/models", None, "admin"),
]
ROLE_PERMISSIONS = {
    "admin": {"read", "inference", "observe", "admin"},
    "developer": {"read", "inference", "observe"},
    "viewer": {"read", "observe"},
    "service": {"read", "inference"},
}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def call(gw: Gateway, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return await gw.client.request(method, path, json=body, headers=headers)


@pytest.fixture
async def authed(gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]) -> Any:
    settings = make_settings(auth={"cache_ttl_s": 0})
    gw: Gateway = await gateway_factory(settings)
    d = gw.runtime.auth.directory
    keys: dict[str, str] = {}
    for role in ROLE_PERMISSIONS:
        d.create_user(f"{role}-user", ADMIN, role=role, kind="service" if role == "service" else "user")
        keys[role], _ = d.create_key(f"{role}-user", ADMIN)
    keys["revoked"], row = d.create_key("admin-user", ADMIN)
    d.revoke(row.id, ADMIN)
    keys["expired"], _ = d.create_key(
        "admin-user", ADMIN, expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    keys["inference-only"], _ = d.create_key("admin-user", ADMIN, routes=["read", "inference"])
    gw.runtime.auth.refresh()
    return gw, keys


async def test_authorization_matrix(authed: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    gw, keys = authed
    real = keys["admin"]
    bad = {
        "no key": {},
        "malformed": bearer("not-a-key"),
        "unknown": bearer(real[:-4] + "AAAA"),
        "wrong prefix": bearer("ldk_000000000000_" + real.split("_", 2)[2]),
        "revoked": bearer(keys["revoked"]),
        "expired": bearer(keys["expired"]),
    }
    unexpected = []
    bodies = set()
    for method, path, body, needed in ROUTES:
        for label, headers in bad.items():
            resp = await call(gw, method, path, body, headers)
            want = 200 if needed is None else 401
            if resp.status_code != want:
                unexpected.append(f"{label} {method} {path}: {resp.status_code} != {want}")
            if want == 401:
                bodies.add(resp.text)
        for role, permissions in ROLE_PERMISSIONS.items():
            resp = await call(gw, method, path, body, bearer(keys[role]))
            want = 200 if needed is None or needed in permissions else 403
            if resp.status_code != want:
                unexpected.append(f"{role} {method} {path}: {resp.status_code} != {want} {resp.text[:200]}")
        resp = await call(gw, method, path, body, bearer(keys["inference-only"]))
        want = 200 if needed in (None, "read", "inference") else 403
        if resp.status_code != want:
            unexpected.append(f"inference-only {method} {path}: {resp.status_code} != {want}")
    assert unexpected == []
    # Every refusal looks the same: nothing tells which part of the key was wrong.
    assert len(bodies) == 1, bodies
    assert real not in "".join(bodies)
    secrets_part = [k.split("_", 2)[2] for k in keys.values()]
    assert not [s for s in secrets_part if s in caplog.text]


async def test_admin_api_key_lifecycle_and_model_scope(authed: Any) -> None:
    gw, keys = authed
    admin = bearer(keys["admin"])
    resp = await gw.client.post(
        "/admin/keys", json={"user": "developer-user", "models": ["fake"], "rpm": 100}, headers=admin
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    new = created["key"]
    assert new.startswith(created["prefix"])
    assert created["state"] == "active"
    # The key is never shown again and never stored in the clear.
    listed = (await gw.client.get("/admin/keys", headers=admin)).text
    assert new not in listed
    assert created["prefix"] in listed
    db = gw.runtime.settings.home / "llmdock.db"
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert new not in dump
    assert new.split("_", 2)[2] not in dump
    # Scoped to one model: the others are hidden and refused.
    models = (await gw.client.get("/v1/models", headers=bearer(new))).json()["data"]
    assert [m["id"] for m in models] == ["fake"]
    emb = await gw.client.post(
        "/v1/embeddings", json={"model": "fake-embed", "input": "x"}, headers=bearer(new)
    )
    assert emb.status_code == 403
    assert emb.json()["error"]["param"] == "model"
    assert (await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(new))).status_code == 200
    # Rotation: the new key works at once, the old one is refused at once.
    rotated = (await gw.client.post(f"/admin/keys/{created['id']}/rotate", headers=admin)).json()
    assert rotated["rotated_from"] == created["id"]
    assert (await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(new))).status_code == 401
    ok = await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(rotated["key"]))
    assert ok.status_code == 200
    revoked = await gw.client.post(f"/admin/keys/{rotated['prefix']}/revoke", headers=admin)
    assert revoked.json()["state"] == "revoked"
    assert (
        await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(rotated["key"]))
    ).status_code == 401
    actions = [
        r["action"]
        for r in (await gw.client.get("/admin/audit?limit_rows=500", headers=admin)).json()["data"]
    ]
    assert {"key.create", "key.revoke", "auth.failure"} <= set(actions)


async def test_admin_api_is_closed_while_auth_is_off(gateway: Gateway) -> None:
    assert not gateway.runtime.auth.active()
    assert (await gateway.client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    resp = await gateway.client.get("/admin/keys")
    assert resp.status_code == 403
    assert "llmdock keys create --role admin" in resp.text


async def test_key_and_team_rate_limits(authed: Any) -> None:
    gw, keys = authed
    d = gw.runtime.auth.directory
    d.create_team("small", ADMIN, rpm=3)
    d.create_user("t1", ADMIN, role="service", team="small")
    k1, _ = d.create_key("t1", ADMIN, rpm=2)
    k2, _ = d.create_key("t1", ADMIN)
    first = await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(k1))
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] in {"2", "3"}
    assert (await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(k1))).status_code == 200
    over = await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(k1))
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    assert "key" in over.json()["error"]["message"]
    # The team's 3 per minute are shared by its keys: one more on k2, then the team is full.
    assert (await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(k2))).status_code == 200
    team_over = await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(k2))
    assert team_over.status_code == 429
    assert "team" in team_over.json()["error"]["message"]


async def test_budget_per_key(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    priced = ModelConfig(
        deployments=[{"backend": "fake", "price": {"input_per_1m": 1_000_000, "output_per_1m": 1_000_000}}]
    )
    gw: Gateway = await gateway_factory(make_settings(models={"fake": priced}, default_embedding_model=""))
    d = gw.runtime.auth.directory
    d.create_user("root", ADMIN, role="admin")
    d.create_key("root", ADMIN)
    d.create_user("payer", ADMIN, role="service")
    key, _ = d.create_key("payer", ADMIN, budget=5.0, budget_period="day")
    gw.runtime.auth.refresh()
    first = await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] >= 5  # at 1 per token, this request alone spends the budget
    for _ in range(100):  # accounting runs just after the response
        if sum(gw.runtime.auth.spend.totals.values()) >= 5:
            break
        await asyncio.sleep(0.01)
    refused = await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert refused.status_code == 402
    body = refused.json()["error"]
    assert body["code"] == "budget_exceeded"
    assert "daily budget" in body["message"]
    assert 0 < int(refused.headers["retry-after"]) <= 86400
    # Spend is read back from the traces after a restart.
    gw.flush_traces()
    gw.runtime.auth.spend.totals.clear()
    again = await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert again.status_code == 402


def test_a_changed_configuration_is_audited_once(make_settings: Callable[..., Settings]) -> None:
    from llmdock.store import Store, audit

    first = make_settings(auth={"secret": "s3cr3t-value"})
    store = Store(first.resolved_database_url())
    assert audit.record_config(store, first, "gateway", "host")
    assert not audit.record_config(store, make_settings(auth={"secret": "s3cr3t-value"}), "gateway", "host")
    changed = make_settings(auth={"secret": "s3cr3t-value"}, cache={"exact": False})
    assert audit.record_config(store, changed, "gateway", "host")
    rows = audit.list_rows(store, action="config.change")
    assert [r.target for r in rows] == ["cache", "initial"]
    assert rows[0].before == {"cache": audit.config_snapshot(first)["cache"]}
    assert rows[0].after is not None
    assert rows[0].after["cache"]["exact"] is False
    assert "s3cr3t-value" not in str(rows[0].after)
    assert rows[0].after["auth"]["secret"] == "***"
    assert audit.verify(store).ok


async def test_the_gateway_applies_the_retention_period(make_settings: Callable[..., Settings]) -> None:
    import datetime as dt

    from llmdock.gateway.app import retention_loop
    from llmdock.runtime import Runtime
    from llmdock.store import TraceRecord, count_traces, write_traces

    runtime = Runtime(make_settings(retention={"traces_days": 30, "interval_s": 3600}))
    assert runtime.store is not None
    now = dt.datetime.now(dt.UTC)
    records = [
        TraceRecord(
            id=f"t{age}",
            created_at=now - dt.timedelta(days=age),
            operation="chat",
            model="fake",
            status="ok",
            duration_ms=1,
        )
        for age in (1, 29, 31, 400)
    ]
    write_traces(runtime.store, records)
    from llmdock.store import audit
    from llmdock.store.monitor_eval_rows import EvalClaim

    with runtime.store.session() as s, s.begin():  # the online evaluator's claims go with their traces
        for r in records:
            s.add(EvalClaim(rule="r", trace_id=r.id, trace_created_at=r.created_at, claimed_at=now))

    task = asyncio.create_task(retention_loop(runtime))
    for _ in range(300):  # the purge runs in a thread; its audit row is written after the deletes
        if audit.list_rows(runtime.store, action="retention.purge"):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert count_traces(runtime.store) == 2
    with runtime.store.session() as s:
        assert sorted(c.trace_id for c in s.query(EvalClaim)) == ["t1", "t29"]
    purge = audit.list_rows(runtime.store, action="retention.purge")
    assert purge[0].after == {"older_than_days": 30, "traces_deleted": 2, "feedback_deleted": 0}
    await runtime.close()


async def test_a_restart_does_not_hand_a_key_a_fresh_minute(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    gw: Gateway = await gateway_factory(settings)
    d = gw.runtime.auth.directory
    d.create_user("root", ADMIN, role="admin")
    d.create_key("root", ADMIN)  # auth is on once an admin key exists
    d.create_user("svc", ADMIN, role="service")
    key, _ = d.create_key("svc", ADMIN, rpm=3)
    for _ in range(2):
        assert (
            await gw.client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        ).status_code == 200
    gw.flush_traces()
    await gw.runtime.close()  # as a restart: the next runtime's limiter starts from the stored traces
    again: Gateway = await gateway_factory(settings)
    assert (
        await again.client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    ).status_code == 200
    over = await again.client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
    assert over.status_code == 429
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
