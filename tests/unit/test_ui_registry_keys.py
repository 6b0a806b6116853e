"""The dashboard's models (lineage, aliases promoted and rolled back), keys (admins only; a new key shown once)
and usage (by day, model, team, key; team-scoped) pages, in process on the fake backend."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmdock.gateway import create_app
from llmdock.privacy.gdpr import erase_subject
from llmdock.registry import ModelRegistry
from llmdock.runtime import Runtime
from llmdock.store import audit
from llmdock.store.retention import purge
from llmdock.store.trace_policy import Match, RetentionPolicy
from llmdock.store.traces import write_traces
from tests.conftest import fake_settings
from tests.integration.in_process import llmdock
from tests.integration.test_ui import ACTOR, HOSTILE, csrf_of, keys, record, sign_in, team_id


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = Runtime(fake_settings(tmp_path))
    with TestClient(create_app(runtime)) as client:
        yield client, runtime


def register(runtime: Runtime, tmp_path: Path) -> ModelRegistry:
    """base v1, v2; tuned v1 made from base v2 over a dataset, with a prompt."""
    registry = ModelRegistry(runtime.store, runtime.settings.home)
    for i in (1, 2):
        f = tmp_path / f"base{i}.gguf"
        f.write_bytes(b"weights %d" % i)
        registry.register("base", f, ACTOR, progress=False, description=f"base {HOSTILE}")
    f = tmp_path / "tuned.gguf"
    f.write_bytes(b"tuned")
    lineage = {
        "base_model": "models:/base@production",
        "base_model_version": "base/2",
        "training_run": "ft-abc",
        "method": "lora",
        "dataset": "support",
        "dataset_version": "support@1234",
        "prompt_template": "answer",
        "hyperparameters": {"lr": 0.001},
    }
    registry.register("tuned", f, ACTOR, progress=False, lineage=lineage, metrics={"loss": 0.5})
    return registry


def test_models_lineage_and_aliases(app: Any, tmp_path: Path) -> None:
    client, runtime = app
    k = keys(runtime)
    registry = register(runtime, tmp_path)
    registry.labels.set("base", "production", 1, ACTOR)
    sign_in(client, k["vera"])
    listing = client.get("/ui/models")
    assert 'href="/ui/models/base"' in listing.text
    assert "production → 1" in listing.text
    tuned = client.get("/ui/models/tuned")
    steps = re.findall(r'<span class="kind">(\w+)</span>', tuned.text)
    assert steps == ["base", "adapter", "dataset", "prompt"]
    assert 'href="/ui/models/base#v2"' in tuned.text  # the base version it was made from
    assert 'href="/ui/prompts/answer"' in tuned.text
    assert "hyperparameters" in tuned.text  # under "more lineage"
    base = client.get("/ui/models/base")
    assert HOSTILE not in base.text
    assert "&lt;script&gt;" in base.text
    made = re.search(r'id="v2".*?Made from this version: (.*?)</p>', base.text, re.S)
    assert made is not None
    assert "tuned/1" in made.group(1)
    assert "may look, not move aliases" in base.text
    refused = client.post(
        "/ui/models/base/promote", data={"label": "production", "version": "2", "csrf": csrf_of(base.text)}
    )
    assert refused.status_code == 403
    assert client.get("/ui/models/nope").status_code == 404

    client.cookies.clear()
    sign_in(client, k["dev"])
    page = client.get("/ui/models/base")
    assert (
        client.post("/ui/models/base/promote", data={"label": "production", "version": "2"}).status_code
        == 403
    )
    moved = client.post(
        "/ui/models/base/promote", data={"label": "production", "version": "2", "csrf": csrf_of(page.text)}
    )
    assert "production now points at version 2 (was version 1)" in moved.text
    assert registry.labels.get("base", "production") == 2
    back = client.post("/ui/models/base/rollback", data={"label": "production", "csrf": csrf_of(page.text)})
    assert "production rolled back to version 1" in back.text
    rows = audit.list_rows(runtime.store, limit=2)
    assert [r.action for r in rows] == ["model.rollback", "model.promote"]
    assert all("dev" in r.actor and "(dashboard)" in r.actor for r in rows)
    bad = client.post(
        "/ui/models/base/promote", data={"label": "production", "version": "x", "csrf": csrf_of(page.text)}
    )
    assert bad.status_code == 400
    assert "version: not a version number" in bad.text


def new_key(html: str) -> str:
    found = re.search(r'<code class="secret" id="new-key">([^<]+)</code>', html)
    assert found, "no new key on the page"
    return found.group(1)


def test_keys_are_for_admins_and_a_new_key_is_shown_once(app: Any) -> None:
    client, runtime = app
    k = keys(runtime)
    sign_in(client, k["dev"])
    assert client.get("/ui/keys").status_code == 403
    assert ">Keys</a>" not in client.get("/ui/traces").text
    page = client.get("/ui/traces")
    assert (
        client.post("/ui/keys/revoke", data={"key": k["vera"][:16], "csrf": csrf_of(page.text)}).status_code
        == 403
    )

    client.cookies.clear()
    sign_in(client, k["root"])
    page = client.get("/ui/keys")
    assert page.status_code == 200
    assert page.text.count('action="/ui/keys/revoke"') == 5
    assert all(key not in page.text for key in k.values())  # never a key in clear, only prefixes
    vera = next(u for u in runtime.auth.directory.users() if u.name == "vera")
    no_csrf = client.post("/ui/keys/create", data={"user": vera.id, "name": "nightly"})
    assert no_csrf.status_code == 403
    made = client.post(
        "/ui/keys/create",
        data={"user": vera.id, "name": f"n{HOSTILE}", "expires_days": "30", "csrf": csrf_of(page.text)},
    )
    assert made.status_code == 200
    clear = new_key(made.text)
    assert HOSTILE not in made.text
    assert clear not in client.get("/ui/keys").text  # shown once
    row = runtime.auth.directory.key(clear)
    assert row.expires_at is not None
    assert row.expires_at > datetime.now(UTC) + timedelta(days=29)
    bad = client.post(
        "/ui/keys/create", data={"user": vera.id, "expires_days": "soon", "csrf": csrf_of(page.text)}
    )
    assert bad.status_code == 400
    assert "expires_days: not a number of days" in bad.text

    rotated = client.post("/ui/keys/rotate", data={"key": row.id, "csrf": csrf_of(page.text)})
    second = new_key(rotated.text)
    assert runtime.auth.directory.key(row.id).revoked_at is not None
    assert runtime.auth.directory.key(second).rotated_from == row.id
    revoked = client.post("/ui/keys/revoke", data={"key": second[:16], "csrf": csrf_of(page.text)})
    assert f"key {second[:16]} revoked" in revoked.text
    assert (
        client.post("/ui/keys/revoke", data={"key": "ldk_nope", "csrf": csrf_of(page.text)}).status_code
        == 404
    )
    actions = [r.action for r in audit.list_rows(runtime.store, limit=4)]
    assert actions == ["key.revoke", "key.revoke", "key.create", "key.create"]

    client.cookies.clear()
    assert sign_in(client, second).status_code == 401  # the revoked key signs no one in


def test_usage_by_day_model_team_and_key_scoped_to_the_team(app: Any) -> None:
    client, runtime = app
    k = keys(runtime)
    blue, red = team_id(runtime, "blue"), team_id(runtime, "red")
    vera_key = runtime.auth.directory.key(k["vera"])
    now = datetime.now(UTC)
    write_traces(
        runtime.store,
        [
            record(
                1,
                created_at=now - timedelta(hours=30),
                team_id=blue,
                api_key_id=vera_key.id,
                cost=0.5,
                prompt_tokens=10,
            ),
            record(
                2, created_at=now - timedelta(hours=3), team_id=blue, model="other", cost=0.25, status="error"
            ),
            record(3, created_at=now, team_id=red, cost=2.0),
        ],
    )
    sign_in(client, k["root"])
    page = client.get("/ui/usage?period=7d")
    assert page.status_code == 200

    def table(html: str, dim: str) -> dict[str, tuple[int, str]]:
        body = re.search(rf'aria-labelledby="u-{dim}">.*?<tbody>(.*?)</tbody>', html, re.S)
        assert body is not None, dim
        rows = re.findall(
            r'<th scope="row">([^<]*)</th><td class="num">(\d+)</td>.*?<td class="num">([\d.]+)</td></tr>',
            body.group(1),
        )
        return {label: (int(n), cost) for label, n, cost in rows}

    assert table(page.text, "model") == {"fake": (2, "2.5000"), "other": (1, "0.2500")}
    assert table(page.text, "team") == {"red": (1, "2.0000"), "blue": (2, "0.7500")}
    by_key = table(page.text, "key")
    assert by_key[f"{vera_key.prefix}… vera"] == (1, "0.5000")
    assert len(table(page.text, "day")) == 2
    client.cookies.clear()
    sign_in(client, k["vera"])
    team = client.get("/ui/usage")
    assert table(team.text, "team") == {"blue": (2, "0.7500")}
    assert client.get("/ui/usage?period=1y").status_code == 400


def test_erased_and_expired_traces_leave_the_usage_page_and_llmdock_usage(app: Any, tmp_path: Path) -> None:
    """Both read the same kept hours, which erasure and retention subtract from (the dashboard's own hours
    kept counting them)."""
    client, runtime = app
    k = keys(runtime)
    three_hours_ago, two_days_ago = (datetime.now(UTC) - timedelta(hours=h) for h in (3, 40))
    write_traces(
        runtime.store,
        [record(i, created_at=three_hours_ago, subject="ann", cost=1.0) for i in range(3)]
        + [record(3 + i, created_at=three_hours_ago, subject="bob", cost=0.25) for i in range(2)]
        + [record(5 + i, created_at=two_days_ago, model="chatty", cost=0.5) for i in range(2)],
    )
    sign_in(client, k["root"])

    def page() -> tuple[int, dict[str, str]]:
        html = client.get("/ui/usage?period=7d").text
        total = re.search(r"<p>(\d+) requests", html)
        body = re.search(r'aria-labelledby="u-model">.*?<tbody>(.*?)</tbody>', html, re.S)
        assert total is not None
        assert body is not None
        rows = re.findall(r'<th scope="row">([^<]*)</th>.*?<td class="num">([\d.]+)</td></tr>', body.group(1))
        return int(total.group(1)), dict(rows)

    def cli() -> dict[str, tuple[int, float]]:
        result = llmdock(tmp_path, "usage", "--json", "--days", "3")
        assert result.exit_code == 0, result.output
        return {r["model"]: (r["requests"], round(r["cost"], 6)) for r in json.loads(result.stdout)}

    assert page() == (7, {"fake": "3.5000", "chatty": "1.0000"})  # the first view keeps the closed hours
    assert cli() == {"fake": (5, 3.5), "chatty": (2, 1.0)}
    assert erase_subject(runtime.store, "ann", ACTOR, b"k" * 32)["traces_deleted"] == 3
    assert (
        purge(runtime.store, RetentionPolicy(None, ((Match(frozenset({"chatty"}), frozenset()), 1),)), ACTOR)
        == 2
    )
    assert page() == (2, {"fake": "0.5000"})
    assert cli() == {"fake": (2, 0.5)}
