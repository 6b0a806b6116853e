"""The Batch API on an in-process gateway: upload, create, the worker runs the rows through the pipeline, the
output and error files come back in input order; a key sees only its team's files and batches."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from llmdock.config import ModelConfig, Settings
from llmdock.gateway import batches
from llmdock.gateway.batch_rows import PipelineRows
from llmdock.jobs.batch_lease import holder
from llmdock.jobs.batch_worker import BatchWorker
from llmdock.store.audit import Actor
from llmdock.store.batch_lease_rows import BatchLease
from llmdock.store.jobs_rows import BatchFile
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


async def test_files_are_listed_by_purpose_page_by_page_and_deleted_with_their_content(
    gateway: Gateway,
) -> None:
    worker = batches.start_worker(gateway.runtime)
    assert worker is not None
    try:
        first = await upload(gateway, batch_file(6))
        created = await create(gateway, first["id"])
        running = await gateway.client.delete(f"/v1/files/{first['id']}")
        assert running.status_code == 409, running.text  # the batch still reads it
        done = await wait_done(gateway, created["id"])
    finally:
        worker.cancel()
    second, twin = await upload(gateway, batch_file(7)), await upload(gateway, batch_file(7))
    listed = (await gateway.client.get("/v1/files", params={"purpose": "batch"})).json()
    assert [f["id"] for f in listed["data"]] == [twin["id"], second["id"], first["id"]]  # newest first
    assert (listed["object"], listed["has_more"], listed["last_id"]) == ("list", False, first["id"])
    outputs = (await gateway.client.get("/v1/files", params={"purpose": "batch_output"})).json()["data"]
    assert {f["id"] for f in outputs} == {done["output_file_id"], done["error_file_id"]}
    pages, after = [], None
    while True:
        params = {"limit": 2, "order": "asc", "purpose": "batch", **({"after": after} if after else {})}
        got = (await gateway.client.get("/v1/files", params=params)).json()
        pages.append([f["id"] for f in got["data"]])
        if not got["has_more"]:
            break
        after = got["last_id"]
    assert pages == [[first["id"], second["id"]], [twin["id"]]]

    home = gateway.runtime.settings.home
    blob = home / "artifacts" / gateway.runtime.store.session().get(BatchFile, twin["id"]).sha256  # type: ignore[union-attr]
    deleted = await gateway.client.delete(f"/v1/files/{second['id']}")
    assert deleted.json() == {"id": second["id"], "object": "file", "deleted": True}
    assert blob.exists()  # the twin has the same content: one copy, still needed
    assert (await gateway.client.delete(f"/v1/files/{twin['id']}")).status_code == 200
    assert not blob.exists()
    for path in (f"/v1/files/{twin['id']}", f"/v1/files/{twin['id']}/content"):
        assert (await gateway.client.get(path)).status_code == 404
    assert (await gateway.client.delete(f"/v1/files/{twin['id']}")).status_code == 404


async def test_a_batch_past_its_completion_window_expires_with_the_rest_in_its_error_file(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    slow = {"fake": ModelConfig(backend="fake", delay_s=0.2)}
    gw: Gateway = await gateway_factory(make_settings(models=slow))
    rows = 80  # 8 at once, 0.2 s each: 2 s of work for a 1 s window
    lines = [json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}})
             for i in range(rows)]  # fmt: skip
    f = await upload(gw, ("\n".join(lines) + "\n").encode())
    refused = await gw.client.post(
        "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                             "completion_window": "soon"})  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["error"]["message"].startswith("completion_window 'soon': a duration")
    resp = await gw.client.post(
        "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                             "completion_window": "1s"})  # fmt: skip
    created = resp.json()
    assert created["expires_at"] - created["created_at"] == 1
    worker = batches.start_worker(gw.runtime)
    assert worker is not None
    try:
        for _ in range(200):
            got = (await gw.client.get(f"/v1/batches/{created['id']}")).json()
            if got["status"] not in ("validating", "in_progress", "finalizing"):
                break
            await asyncio.sleep(0.05)
    finally:
        worker.cancel()
    assert got["status"] == "expired", got
    assert got["expired_at"] is not None
    counts = got["request_counts"]
    assert 0 < counts["completed"] < rows
    assert counts["completed"] + counts["failed"] == rows == counts["total"]
    out = (await gw.client.get(f"/v1/files/{got['output_file_id']}/content")).text.splitlines()
    errs = [
        json.loads(x)
        for x in (await gw.client.get(f"/v1/files/{got['error_file_id']}/content")).text.splitlines()
    ]
    assert (len(out), len(errs)) == (counts["completed"], counts["failed"])
    assert [json.loads(x)["custom_id"] for x in out] + [e["custom_id"] for e in errs] == [
        f"q{i}" for i in range(rows)
    ]
    assert {e["error"]["code"] for e in errs} == {"batch_expired"}
    assert errs[0]["response"] is None


async def test_one_worker_runs_the_batches_and_the_next_takes_over_when_it_stops(gateway: Gateway) -> None:
    store, home = gateway.runtime.store, gateway.runtime.settings.home
    assert store is not None
    rows = lambda owner: PipelineRows(gateway.runtime)  # noqa: E731
    workers = [BatchWorker(store, home, rows, poll_s=0.05, lease_s=2) for _ in range(3)]
    tasks = [asyncio.create_task(w.run_forever()) for w in workers]
    try:
        for _ in range(100):
            if holder(store):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # every worker has asked by now
        assert [w.leading for w in workers].count(True) == 1
        first = next(i for i, w in enumerate(workers) if w.leading)
        assert holder(store) == workers[first].name
        with store.session() as s:  # held for batch.lease_s, not a fixed 10 s
            until = s.scalars(select(BatchLease.until)).one()
        assert 0 < (until.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() <= 2
        tasks[first].cancel()  # a clean stop gives the lease back: the next one takes it at its next poll
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[first]
        await asyncio.sleep(0.5)
        assert [w.leading for i, w in enumerate(workers) if i != first].count(True) == 1
        assert holder(store) in {w.name for i, w in enumerate(workers) if i != first}
        created = await create(gateway, (await upload(gateway, batch_file(12)))["id"])
        assert (await wait_done(gateway, created["id"]))["status"] == "completed"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
