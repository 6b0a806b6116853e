"""The Batch API on an in-process gateway: upload, create, the worker runs the rows through the pipeline, the
output and error files come back in input order; a key sees only its team's files and batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from llmdock.config import Settings
from llmdock.gateway import batches
from llmdock.store.audit import Actor
from tests.conftest import Gateway

pytestmark = pytest.mark.asyncio
ACTOR = Actor("test", "batch-api")


def batch_file(n: int) -> bytes:
    lines = [
        json.dumps(
            {
                "custom_id": f"q{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "fake", "messages": [{"role": "user", "content": f"question {i}"}]},
            }  # fmt: skip
        )
        for i in range(n)
    ]
    lines[3] = json.dumps({"custom_id": "bad", "body": {"model": "fake", "messages": [], "temperature": 9}})
    lines[5] = "{not json"
    lines[4] = lines[4].replace("/v1/chat/completions", "/v1/completions")  # not the batch's endpoint
    return ("\n".join(lines) + "\n").encode()


async def upload(gw: Gateway, data: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await gw.client.post(
        "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def create(gw: Gateway, file_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await gw.client.post(
        "/v1/batches",
        json={"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        headers=headers,
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def wait_done(gw: Gateway, batch_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    for _ in range(300):
        got: dict[str, Any] = (await gw.client.get(f"/v1/batches/{batch_id}", headers=headers)).json()
        if got["status"] in ("completed", "failed", "cancelled"):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not finish: {got}")


async def test_a_batch_runs_every_line_through_the_pipeline_and_keeps_errors_apart(gateway: Gateway) -> None:
    worker = batches.start_worker(gateway.runtime)
    assert worker is not None
    try:
        f = await upload(gateway, batch_file(12))
        assert (f["object"], f["purpose"], f["filename"]) == ("file", "batch", "in.jsonl")
        created = await create(gateway, f["id"])
        assert created["status"] == "validating"
        done = await wait_done(gateway, created["id"])
    finally:
        worker.cancel()
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 12, "completed": 9, "failed": 3}
    out = (await gateway.client.get(f"/v1/files/{done['output_file_id']}/content")).text.splitlines()
    errs = (await gateway.client.get(f"/v1/files/{done['error_file_id']}/content")).text.splitlines()
    answers = [json.loads(x) for x in out]
    assert [a["custom_id"] for a in answers] == [f"q{i}" for i in range(12) if i not in (3, 4, 5)]
    assert answers[0]["response"]["body"]["choices"][0]["message"]["content"] == "fake answer to: question 0"
    assert all(a["response"]["request_id"] for a in answers)  # each row traced
    failed = [json.loads(x) for x in errs]
    assert failed[0]["custom_id"] == "bad"
    assert failed[0]["response"]["status_code"] == 422  # what /v1/chat/completions answers
    assert failed[0]["error"]["message"].startswith("temperature:")
    assert (
        failed[1]["error"]["message"]
        == "url '/v1/completions' is not the batch's endpoint '/v1/chat/completions'"
    )
    assert failed[2]["error"]["message"].startswith(f"{f['id']}:6: not valid JSON")
    listed = (await gateway.client.get("/v1/batches")).json()
    assert [b["id"] for b in listed["data"]] == [created["id"]]


async def test_a_key_sees_only_its_teams_files_and_batches(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(make_settings(auth={"cache_ttl_s": 0}))
    d = gw.runtime.auth.directory
    assert d is not None
    d.create_user("root", ACTOR, role="admin")
    d.create_key("root", ACTOR)  # turns auth on
    keys = {}
    for team in ("blue", "red"):
        d.create_team(team, ACTOR)
        d.create_user(f"dev-{team}", ACTOR, role="developer", team=team)
        keys[team], _ = d.create_key(f"dev-{team}", ACTOR)
    d.create_user("viewer", ACTOR, role="viewer", team="blue")
    keys["viewer"], _ = d.create_key("viewer", ACTOR)
    gw.runtime.auth.refresh()
    blue, red = ({"authorization": f"Bearer {keys[t]}"} for t in ("blue", "red"))
    f = await upload(gw, batch_file(6), blue)
    b = await create(gw, f["id"], blue)
    assert (await gw.client.get(f"/v1/files/{f['id']}", headers=blue)).status_code == 200
    for path in (f"/v1/files/{f['id']}", f"/v1/files/{f['id']}/content", f"/v1/batches/{b['id']}"):
        assert (await gw.client.get(path, headers=red)).status_code == 404, path
    assert (await gw.client.post(f"/v1/batches/{b['id']}/cancel", headers=red)).status_code == 404
    assert (await gw.client.get("/v1/batches", headers=red)).json()["data"] == []
    resp = await gw.client.post(
        "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}, headers=red
    )
    assert resp.status_code == 404
    viewer = {"authorization": f"Bearer {keys['viewer']}"}
    assert (await gw.client.get("/v1/batches", headers=viewer)).status_code == 403
    cancelled = (await gw.client.post(f"/v1/batches/{b['id']}/cancel", headers=blue)).json()
    assert cancelled["status"] == "cancelling"
