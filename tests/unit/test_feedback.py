"""Feedback on traces through the gateway: scores, team scoping, audit, redaction, GDPR, the dataset export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.config import Settings
from llmdock.datasets.versions import Datasets
from llmdock.errors import InvalidRequest
from llmdock.feedback import FeedbackBook, Scope, chat_dataset, check_feedback
from llmdock.privacy.crypto import Keyring, new_key, parse_keys
from llmdock.privacy.gdpr import erase_subject, export_subject
from llmdock.privacy.rotation import key_usage, rotate
from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.feedback_rows import FeedbackRow, feedback_view
from tests.conftest import Gateway

ADMIN = Actor("test", "pytest")


def ring(*keys: str) -> Keyring:
    return Keyring(parse_keys(",".join(keys), "test"))


def chat(user: str, text: str = "hi") -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": text}], "max_tokens": 4, "user": user}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def teams(gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]) -> Any:
    gw: Gateway = await gateway_factory(make_settings(auth={"cache_ttl_s": 0}))
    d = gw.runtime.auth.directory
    assert d is not None
    d.create_user("root", ADMIN, role="admin")
    keys = {"admin": d.create_key("root", ADMIN)[0]}
    for team in ("red", "blue"):
        d.create_team(team, ADMIN)
        d.create_user(f"{team}-app", ADMIN, role="service", kind="service", team=team)
        keys[team] = d.create_key(f"{team}-app", ADMIN)[0]
    d.create_user("red-viewer", ADMIN, role="viewer", team="red")
    keys["red-viewer"] = d.create_key("red-viewer", ADMIN)[0]
    d.create_user("red-reader", ADMIN, role="viewer", team="red")
    keys["red-reader"] = d.create_key("red-reader", ADMIN, routes=["read"])[0]
    gw.runtime.auth.refresh()
    return gw, keys


async def answered(gw: Gateway, key: str, user: str = "ana", text: str = "hi") -> str:
    resp = await gw.client.post("/v1/chat/completions", json=chat(user, text), headers=bearer(key))
    assert resp.status_code == 200, resp.text
    trace_id: str = resp.headers["x-llmdock-trace-id"]
    return trace_id


async def test_a_team_scores_its_own_traces_and_not_another_teams(teams: Any) -> None:
    gw, keys = teams
    red_trace = await answered(gw, keys["red"])
    gw.flush_traces()
    ok = await gw.client.post(
        "/v1/feedback", json={"trace_id": red_trace, "thumbs": "up"}, headers=bearer(keys["red"])
    )
    assert ok.status_code == 201, ok.text
    assert (ok.json()["name"], ok.json()["value"], ok.json()["source"]) == ("thumbs", 1.0, "user")
    viewer = await gw.client.post(
        "/v1/feedback",
        json={"trace_id": red_trace, "rating": 2, "source": "reviewer"},
        headers=bearer(keys["red-viewer"]),
    )
    assert viewer.status_code == 201  # observe is enough
    foreign = await gw.client.post(
        "/v1/feedback", json={"trace_id": red_trace, "thumbs": "down"}, headers=bearer(keys["blue"])
    )
    unknown = await gw.client.post(
        "/v1/feedback", json={"trace_id": "f" * 32, "thumbs": "down"}, headers=bearer(keys["blue"])
    )
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["message"].replace(red_trace, "X") == unknown.json()["error"][
        "message"
    ].replace("f" * 32, "X")
    read_only = await gw.client.post(
        "/v1/feedback", json={"trace_id": red_trace, "thumbs": "up"}, headers=bearer(keys["red-reader"])
    )
    assert read_only.status_code == 403
    admin = await gw.client.post(
        "/v1/feedback",
        json={"trace_id": red_trace, "name": "helpfulness", "value": 0.5},
        headers=bearer(keys["admin"]),
    )
    assert admin.status_code == 201
    store = gw.runtime.store
    assert store is not None
    rows = FeedbackBook(store).rows(Scope("nope"))
    assert rows == []
    assert len(FeedbackBook(store).rows(Scope(None), trace_id=red_trace)) == 3
    added = audit.list_rows(store, action="feedback.add")
    assert len(added) == 3
    assert {r.target for r in added} == {f"trace:{red_trace}"}


async def test_a_rotated_key_loses_its_feedback_rights_and_its_successor_keeps_the_teams(teams: Any) -> None:
    gw, keys = teams
    red_trace = await answered(gw, keys["red"])
    gw.flush_traces()
    d = gw.runtime.auth.directory
    successor, _ = d.rotate(keys["red"][:16], ADMIN)
    gw.runtime.auth.refresh()
    old = await gw.client.post(
        "/v1/feedback", json={"trace_id": red_trace, "thumbs": "up"}, headers=bearer(keys["red"])
    )
    assert old.status_code == 401  # revoked by the rotation
    new = await gw.client.post(
        "/v1/feedback", json={"trace_id": red_trace, "thumbs": "up"}, headers=bearer(successor)
    )
    assert new.status_code == 201, new.text  # the old key's traces are the team's: the successor scores them
    blue = await gw.client.post(
        "/v1/feedback", json={"trace_id": red_trace, "thumbs": "up"}, headers=bearer(keys["blue"])
    )
    assert blue.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": 6}, "rating"),
        ({"rating": 0}, "rating"),
        ({"thumbs": "sideways"}, "thumbs"),
        ({"name": "x", "value": float("inf")}, "value"),
        ({"name": "helpfulness"}, "body"),
        ({"thumbs": "up", "rating": 5}, "body"),
        ({"name": "rating", "value": 3}, "body"),
        ({}, "body"),
        ({"rating": 3, "color": "red"}, "color"),
    ],
)
def test_bad_feedback_names_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_feedback({"trace_id": "abc", **body})
    assert caught.value.param == field


async def test_bad_feedback_is_a_400_and_stores_nothing(gateway: Gateway) -> None:
    trace_id = await answered(gateway, "none")
    gateway.flush_traces()
    resp = await gateway.client.post("/v1/feedback", json={"trace_id": trace_id, "rating": 9})
    assert resp.status_code == 400
    assert "rating" in resp.json()["error"]["message"]
    assert gateway.runtime.store is not None
    assert FeedbackBook(gateway.runtime.store).rows(Scope(None)) == []


async def test_feedback_is_exported_as_a_dataset_and_erased_with_its_subject(
    gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))  # the CLI on the gateway's home and store
    liked = await answered(gateway, "none", user="ana", text="what is two plus two")
    corrected = await answered(gateway, "none", user="ana", text="capital of France?")
    disliked = await answered(gateway, "none", user="bob", text="tell me a joke")
    gateway.flush_traces()
    for body in (
        {"trace_id": liked, "rating": 5},
        {"trace_id": corrected, "thumbs": "down", "correction": "Paris."},
        {"trace_id": disliked, "thumbs": "down", "comment": "not funny"},
    ):
        assert (await gateway.client.post("/v1/feedback", json=body)).status_code == 201
    store = gateway.runtime.store
    assert store is not None
    data = chat_dataset(store)
    assert (data.corrections, data.good_answers) == (1, 1)
    by_trace = {line["metadata"]["trace_id"]: line["messages"] for line in data.lines}
    assert set(by_trace) == {liked, corrected}
    assert by_trace[corrected][-1] == {"role": "assistant", "content": "Paris."}
    assert by_trace[liked][0]["content"] == "what is two plus two"
    json.dumps(data.lines)
    exported = CliRunner().invoke(app, ["feedback", "export", "--to-dataset", "support-fixes", "--json"])
    assert exported.exit_code == 0, exported.output
    version = json.loads(exported.output)
    assert (version["name"], version["version"], version["rows"]) == ("support-fixes", 1, 2)
    assert version["lineage"]["sources"] == [
        {"feedback": {"min_rating": 4, "corrections": 1, "good_answers": 1, "skipped_no_body": 0}}
    ]
    rows = list(Datasets(store, tmp_path).rows(Datasets(store, tmp_path).get("support-fixes/1")))
    assert {r["meta"]["trace_id"]: r["messages"][-1]["content"] for r in rows}[corrected] == "Paris."
    again = CliRunner().invoke(app, ["feedback", "export", "--to-dataset", "support-fixes"])
    assert "unchanged" in again.output  # the same rows: no new version
    neither = CliRunner().invoke(app, ["feedback", "export"])
    assert neither.exception.one_line() == "give --to-dataset NAME or --to-file PATH"

    secret = gateway.runtime.auth.secret
    from datetime import UTC, datetime

    from llmdock.store.monitor_eval_rows import EvalClaim

    with store.session() as s, s.begin():  # the online evaluator's claims go with the erased traces
        for trace_id in (liked, disliked):
            now = datetime.now(UTC)
            s.add(EvalClaim(rule="r", trace_id=trace_id, trace_created_at=now, claimed_at=now))
    exported = export_subject(store, "ana", ADMIN, secret)
    assert sorted(f["trace_id"] for f in exported["feedback"]) == sorted([liked, corrected])
    report = erase_subject(store, "ana", ADMIN, secret)
    assert report["feedback_deleted"] == 2
    assert [r.trace_id for r in FeedbackBook(store).rows(Scope(None))] == [disliked]
    with store.session() as s:
        assert [c.trace_id for c in s.query(EvalClaim)] == [disliked]


async def test_feedback_text_is_masked_sealed_and_resealed_by_key_rotation(
    gateway_factory: Callable[[Settings], Any],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    old_key, new_key_ = new_key(), new_key()
    monkeypatch.setenv("LLMDOCK_ENCRYPTION_KEY", old_key)
    gw: Gateway = await gateway_factory(make_settings(privacy={"pii": "mask", "encrypt_bodies": True}))
    trace_id = await answered(gw, "none")
    gw.flush_traces()
    body = {"trace_id": trace_id, "thumbs": "down", "comment": "mail me at ana@example.org about tulips",
            "correction": "Tulips are flowers."}  # fmt: skip
    resp = await gw.client.post("/v1/feedback", json=body)
    assert resp.status_code == 201
    assert resp.json()["comment"] == "mail me at <EMAIL_ADDRESS> about tulips"
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("llmdock.db*"))
    assert b"tulips" not in raw
    assert b"ana@example.org" not in raw

    store = gw.runtime.store
    assert store is not None
    rotate(store, ring(new_key_, old_key))  # LLMDOCK_ENCRYPTION_KEY="NEW,OLD" llmdock secrets rotate-key
    assert set(key_usage(store)) == {ring(new_key_).current_id}  # trace and feedback: nothing on the old key
    with store.session() as s:
        row = s.query(FeedbackRow).one()
    opened = feedback_view(row, ring(new_key_))  # the old key may now be dropped
    assert (opened["comment"], opened["correction"]) == (
        "mail me at <EMAIL_ADDRESS> about tulips",
        "Tulips are flowers.",
    )


async def test_retention_deletes_feedback_with_its_traces(gateway: Gateway) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from llmdock.store.models import Trace

    old, fresh = await answered(gateway, "none", text="old"), await answered(gateway, "none", text="new")
    gateway.flush_traces()
    for trace_id in (old, fresh):
        body = {"trace_id": trace_id, "thumbs": "down", "correction": "a better answer"}
        assert (await gateway.client.post("/v1/feedback", json=body)).status_code == 201
    store = gateway.runtime.store
    assert store is not None
    with store.session() as s, s.begin():
        s.execute(
            update(Trace).where(Trace.id == old).values(created_at=datetime.now(UTC) - timedelta(days=40))
        )
    from llmdock.store.retention import purge
    from llmdock.store.trace_policy import RetentionPolicy

    assert purge(store, RetentionPolicy(default=30, rules=()), ADMIN) == 1
    assert [r.trace_id for r in FeedbackBook(store).rows(Scope(None))] == [fresh]
    purge = audit.list_rows(store, action="retention.purge")
    assert purge[0].after == {"older_than_days": 30, "traces_deleted": 1, "feedback_deleted": 1}
