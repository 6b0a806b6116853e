"""The authorisation matrix: every route by every role by every key state gets the answer docs/security.md
documents, and nothing gets past it.

The routes are enumerated from the app, so a route added without a row here fails the test. The expected
answer of a (route, role, key state) comes from the table below and the documented rules: a missing, revoked,
expired or rotated-away key gets 401 (everywhere but /health); a role without the route's permission 403; a
key scoped to other models 403 where a model is named; a key or team over its budget 402 on inference; any
other key the route's own answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from llmdock.config import ModelConfig, Settings
from llmdock.gateway.schemas import ErrorBody
from llmdock.store.audit import Actor
from tests.conftest import Gateway

pytestmark = pytest.mark.asyncio

ACTOR = Actor("test", "authz-matrix")
PRICED = {"input_per_1m": 1.0, "output_per_1m": 1.0}
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
Body = Callable[[int], dict[str, Any]] | None


@dataclass(frozen=True)
class Row:
    path: str  # the concrete path requested
    permission: str | None  # docs/security.md; None = public
    allowed: int  # the answer to a key that may use the route
    body: Body = None
    names_model: bool = False  # a key scoped to other models is refused (403)


# (method, route path) -> the documented permission and the route's own answer. One row per route.
MATRIX: dict[tuple[str, str], Row] = {
    ("GET", "/health"): Row("/health", None, 200),
    ("GET", "/ready"): Row("/ready", "read", 200),
    ("GET", "/openapi.json"): Row("/openapi.json", "read", 200),
    ("GET", "/docs"): Row("/docs", "read", 200),
    ("GET", "/docs/oauth2-redirect"): Row("/docs/oauth2-redirect", "read", 200),
    ("GET", "/redoc"): Row("/redoc", "read", 200),
    ("GET", "/v1/models"): Row("/v1/models", "read", 200),
    ("GET", "/v1/models/{model_id}"): Row("/v1/models/fake", "read", 200, names_model=True),
    ("POST", "/v1/chat/completions"): Row("/v1/chat/completions", "inference", 200, lambda n: CHAT, True),
    ("POST", "/v1/completions"): Row(
        "/v1/completions",
        "inference",
        200,
        lambda n: {"model": "fake", "prompt": "hi", "max_tokens": 2},
        True,
    ),
    # any role with inference or observe (all four); a body without a score is refused before any lookup
    ("POST", "/v1/feedback"): Row("/v1/feedback", "read", 400, lambda n: {"trace_id": "0" * 32}),
    ("POST", "/v1/embeddings"): Row(
        "/v1/embeddings", "inference", 200, lambda n: {"model": "fake-embed", "input": "hi"}, True
    ),
    ("POST", "/v1/responses"): Row(
        "/v1/responses",
        "inference",
        200,
        lambda n: {"model": "fake", "input": "hi", "max_output_tokens": 2},
        True,
    ),
    ("GET", "/v1/responses/{response_id}"): Row("/v1/responses/resp_none", "inference", 404),
    ("DELETE", "/v1/responses/{response_id}"): Row("/v1/responses/resp_none", "inference", 404),
    ("GET", "/v1/responses/{response_id}/input_items"): Row(
        "/v1/responses/resp_none/input_items", "inference", 404
    ),
    ("POST", "/v1/files"): Row("/v1/files", "inference", 400),  # no multipart file
    ("GET", "/v1/prompts/{name}"): Row("/v1/prompts/none", "inference", 404),  # no such template
    ("GET", "/v1/files"): Row("/v1/files", "inference", 200),
    ("GET", "/v1/files/{file_id}"): Row("/v1/files/file-none", "inference", 404),
    ("DELETE", "/v1/files/{file_id}"): Row("/v1/files/file-none", "inference", 404),
    ("GET", "/v1/files/{file_id}/content"): Row("/v1/files/file-none/content", "inference", 404),
    ("POST", "/v1/batches"): Row(
        "/v1/batches",
        "inference",
        404,
        lambda n: {
            "input_file_id": "file-none",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    ),
    ("GET", "/v1/batches"): Row("/v1/batches", "inference", 200),
    ("GET", "/v1/batches/{batch_id}"): Row("/v1/batches/batch_none", "inference", 404),
    ("POST", "/v1/batches/{batch_id}/cancel"): Row("/v1/batches/batch_none/cancel", "inference", 404),
    ("GET", "/v1/deployments"): Row("/v1/deployments", "admin", 200),
    ("GET", "/admin/traces"): Row("/admin/traces", "observe", 200),
    ("GET", "/admin/traces/{trace_id}"): Row("/admin/traces/no-such-trace", "observe", 404),
    ("GET", "/admin/usage"): Row("/admin/usage", "observe", 200),
    ("GET", "/metrics"): Row("/metrics", "observe", 200),
    ("GET", "/admin/keys"): Row("/admin/keys", "admin", 200),
    ("POST", "/admin/keys"): Row("/admin/keys", "admin", 201, lambda n: {"user": "fodder", "name": f"k{n}"}),
    ("POST", "/admin/keys/{ref}/revoke"): Row("/admin/keys/no-such-key/revoke", "admin", 404),
    ("POST", "/admin/keys/{ref}/rotate"): Row("/admin/keys/no-such-key/rotate", "admin", 404),
    ("GET", "/admin/users"): Row("/admin/users", "admin", 200),
    ("POST", "/admin/users"): Row("/admin/users", "admin", 201, lambda n: {"name": f"user-{n}"}),
    ("GET", "/admin/teams"): Row("/admin/teams", "admin", 200),
    ("POST", "/admin/teams"): Row("/admin/teams", "admin", 201, lambda n: {"name": f"team-{n}"}),
    ("GET", "/admin/audit"): Row("/admin/audit", "admin", 200),
    ("GET", "/admin/audit/verify"): Row("/admin/audit/verify", "admin", 200),
    ("POST", "/admin/data/export"): Row("/admin/data/export", "admin", 200, lambda n: {"subject": "nobody"}),
    ("POST", "/admin/data/erase"): Row("/admin/data/erase", "admin", 200, lambda n: {"subject": "nobody"}),
    ("GET", "/admin/prompts"): Row("/admin/prompts", "admin", 200),
    ("POST", "/admin/prompts"): Row(
        "/admin/prompts", "admin", 201, lambda n: {"name": f"prompt-{n}", "text": "Say {{ word }}"}
    ),
    ("GET", "/admin/prompts/{name}"): Row("/admin/prompts/greet", "admin", 200),
    ("POST", "/admin/prompts/{name}/labels"): Row(
        "/admin/prompts/greet/labels", "admin", 200, lambda n: {"label": "prod", "version": 1}
    ),
    ("POST", "/admin/prompts/{name}/labels/{label}/rollback"): Row(
        "/admin/prompts/no-such-prompt/labels/prod/rollback", "admin", 404
    ),
    ("GET", "/admin/models"): Row("/admin/models", "admin", 200),
    ("GET", "/admin/models/{name}"): Row("/admin/models/no-such-model", "admin", 404),
    ("POST", "/admin/models/{name}/aliases"): Row(
        "/admin/models/no-such-model/aliases", "admin", 404, lambda n: {"label": "prod", "version": 1}
    ),
    ("POST", "/admin/models/{name}/aliases/{label}/rollback"): Row(
        "/admin/models/no-such-model/aliases/prod/rollback", "admin", 404
    ),
}
ROLES = {  # docs/security.md, "Organisations, teams, users, roles"
    "admin": {"read", "inference", "observe", "admin"},
    "developer": {"read", "inference", "observe"},
    "viewer": {"read", "observe"},
    "service": {"read", "inference"},
}
DEAD = ("revoked", "expired", "rotated-old")  # with "no key" and "not a key": 401, the same body
STATES = ("valid", *DEAD, "other team", "model not in scope", "key over budget", "team over budget")


def expected(row: Row, role: str, state: str) -> int:
    if row.permission is None:
        return row.allowed
    if state in DEAD:
        return 401
    if row.permission not in ROLES[role]:
        return 403
    if state.endswith("over budget") and row.permission == "inference":
        return 402
    if state == "model not in scope" and row.names_model:
        return 403
    return row.allowed


def app_routes(gw: Gateway) -> set[tuple[str, str]]:
    """(method, path) of every route of the app, those of included routers too."""
    app = gw.client._transport.app  # type: ignore[attr-defined]
    return {
        (method, route.path_format)
        for route in iter_route_contexts(app.routes)
        for method in route.methods or ()
        if method != "HEAD"
    }


async def make_keys(gw: Gateway) -> dict[tuple[str, str], str]:
    """A key for each (role, state), all in team "blue" but "other team" (team "red")."""
    d = gw.runtime.auth.directory
    assert d is not None
    for team in ("blue", "red", "broke"):
        d.create_team(team, ACTOR, budget=0.01 if team == "broke" else None)
    d.create_user("fodder", ACTOR, role="viewer")
    d.create_user("root", ACTOR, role="admin")  # turns auth on
    d.create_key("root", ACTOR)
    keys: dict[tuple[str, str], str] = {}
    for role in ROLES:
        kind = "service" if role == "service" else "user"
        for team in ("blue", "red", "broke"):
            d.create_user(f"{role}-{team}", ACTOR, role=role, kind=kind, team=team)
        user = f"{role}-blue"
        keys[role, "valid"], _ = d.create_key(user, ACTOR)
        keys[role, "revoked"], row = d.create_key(user, ACTOR)
        d.revoke(row.id, ACTOR)
        past = datetime.now(UTC) - timedelta(seconds=1)
        keys[role, "expired"], _ = d.create_key(user, ACTOR, expires_at=past)
        keys[role, "rotated-old"], row = d.create_key(user, ACTOR)
        d.rotate(row.id, ACTOR)
        keys[role, "other team"], _ = d.create_key(f"{role}-red", ACTOR)
        keys[role, "model not in scope"], _ = d.create_key(user, ACTOR, models=["other-*"])
        keys[role, "key over budget"], row = d.create_key(user, ACTOR, budget=0.01, budget_period="day")
        await gw.runtime.auth.spend.add(f"key:{row.id}", "day", 1.0)
        keys[role, "team over budget"], _ = d.create_key(f"{role}-broke", ACTOR)
    await gw.runtime.auth.spend.add(f"team:{d.team('broke').id}", "month", 1.0)
    gw.runtime.prompts.registry.create("greet", ACTOR, kind="text", template="Say {{ word }}", config={})  # type: ignore[union-attr]
    gw.runtime.auth.refresh()
    return keys


@pytest.fixture
async def gw(gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]) -> Gateway:
    models = {
        "fake": ModelConfig(deployments=[{"backend": "fake", "price": PRICED}]),
        "fake-embed": ModelConfig(backend="fake", task="embedding"),
    }
    gateway: Gateway = await gateway_factory(make_settings(models=models, auth={"cache_ttl_s": 0}))
    return gateway


async def test_every_route_has_a_row_in_the_matrix(gw: Gateway) -> None:
    assert app_routes(gw) == set(MATRIX)


async def test_every_route_role_and_key_state_gets_the_documented_answer(gw: Gateway) -> None:
    keys = await make_keys(gw)
    count = itertools.count()
    wrong: list[str] = []
    refusals: set[str] = set()

    async def ask(route: tuple[str, str], row: Row, headers: dict[str, str]) -> Any:
        body = row.body(next(count)) if row.body else None
        resp = await gw.client.request(route[0], row.path, json=body, headers=headers)
        if resp.status_code >= 400:
            ErrorBody.model_validate(resp.json())  # every refusal is an OpenAI error
        return resp

    for route, row in MATRIX.items():
        for label, headers in {"no key": {}, "not a key": {"authorization": "Bearer sk-123"}}.items():
            resp = await ask(route, row, headers)
            want = row.allowed if row.permission is None else 401
            if resp.status_code != want:
                wrong.append(f"{label} {route}: {resp.status_code}, documented {want}: {resp.text[:150]}")
        for (role, state), key in keys.items():
            resp = await ask(route, row, {"authorization": f"Bearer {key}"})
            want = expected(row, role, state)
            if resp.status_code != want:
                wrong.append(
                    f"{role}/{state} {route}: {resp.status_code}, documented {want}: {resp.text[:150]}"
                )
            if resp.status_code == 401:
                refusals.add(resp.text)
    assert wrong == []
    assert len(refusals) == 1  # nothing tells a revoked key from an expired or rotated one
    assert len(keys) == len(ROLES) * len(STATES)


async def test_a_key_scoped_to_other_models_does_not_see_them_listed(gw: Gateway) -> None:
    keys = await make_keys(gw)
    resp = await gw.client.get(
        "/v1/models", headers={"authorization": f"Bearer {keys['admin', 'model not in scope']}"}
    )
    assert resp.status_code == 200
    assert resp.json()["data"] == []
    resp = await gw.client.get("/v1/models", headers={"authorization": f"Bearer {keys['admin', 'valid']}"})
    assert {m["id"] for m in resp.json()["data"]} == {"fake", "fake-embed"}


async def test_path_variants_do_not_reach_a_handler_the_role_may_not_use(gw: Gateway) -> None:
    keys = await make_keys(gw)
    viewer = {"authorization": f"Bearer {keys['viewer', 'valid']}"}
    variants = [
        ("POST", "/v1/chat/completions/", CHAT),
        ("POST", "//v1/chat/completions", CHAT),
        ("POST", "/v1/chat/completions?model=fake", CHAT),
        ("POST", "/V1/chat/completions", CHAT),
        ("GET", "/admin/keys/", None),
        ("GET", "//admin/keys", None),
        ("GET", "/admin/./keys", None),
        ("GET", "/admin/traces/../keys", None),
        ("GET", "/ADMIN/keys", None),
        ("HEAD", "/admin/keys", None),
        ("GET", "/v1/deployments/", None),
    ]
    reached = []
    for method, path, body in variants:
        resp = await gw.client.request(method, path, json=body, headers=viewer, follow_redirects=True)
        if resp.status_code < 300:
            reached.append(f"{method} {path}: {resp.status_code} {resp.text[:100]}")
    assert reached == []
