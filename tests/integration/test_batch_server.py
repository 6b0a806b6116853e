"""The Batch API of a real `llmdock serve` with two workers, through the openai SDK unchanged: exactly one
worker runs the batch; that worker killed mid-batch, the other takes it over; the whole gateway killed with
SIGKILL mid-batch and started again on the same home, the batch completes with every line exactly once and
the rows done before either kill are not sent again. Files are listed, retrieved and deleted, and a batch
expires past its completion window, all through the SDK."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import openai
import pytest
from openai.types import Batch

from llmdock.jobs.batch_lease import holder
from llmdock.store import Store
from tests.integration.conftest import start_server, stop_server
from tests.upstream import Upstream

pytestmark = pytest.mark.server
ROWS = 120
LEASE_S = 3


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def journal_done(path: Path) -> set[int]:
    lines = path.read_bytes().splitlines()[1:] if path.exists() else []
    return {int(x.split(b"\t")[0]) for x in lines if x.count(b"\t") >= 2}


def runner(home: Path) -> tuple[str, int]:
    """The worker holding the batch-runner lease (its name, its pid), as the store says."""
    store = Store(f"sqlite:///{home / 'llmdock.db'}", migrate=False)
    try:
        name = holder(store)
    finally:
        store.close()
    return name, int(name.split(":")[1]) if name else 0


def wait_rows(progress: Path, n: int) -> set[int]:
    deadline = time.monotonic() + 60
    while len(done := journal_done(progress)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return done


def test_a_batch_survives_a_killed_runner_and_a_killed_gateway_and_completes_every_line_once(
    tmp_path: Path,
) -> None:
    up = Upstream("up", delay=0.1)
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(  # a short lease (batch.lease_s): a killed runner is taken over after 3 s, not 10
        f"include_builtin_models: false\ndefault_model: up\ndefault_embedding_model: ''\nbatch:\n  lease_s: {LEASE_S}\n"
        "privacy:\n  pii: off\n"  # no PII models to load: the workers start sooner
        f"models:\n  up:\n    backend: openai_compat\n    base_url: {up.url}\n    upstream_model: m\n"
    )
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps(
            {
                "custom_id": f"row-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "up", "messages": [{"role": "user", "content": f"q{i}"}]},
            }
        )  # fmt: skip
        for i in range(ROWS)
    ]
    src.write_text("\n".join(lines) + "\n")
    server = start_server(tmp_path, "--config", str(cfg), "--workers", "2")
    try:
        client = sdk(server.url)
        with src.open("rb") as fh:
            uploaded = client.files.create(file=fh, purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        progress = tmp_path / "batches" / f"{batch.id}.progress"
        wait_rows(progress, 10)
        name, pid = runner(tmp_path)
        assert pid not in (0, server.proc.pid)  # one worker process of the two holds the lease
        os.kill(pid, signal.SIGKILL)  # the runner dies; the other worker takes over once the leases lapse
        t_kill, before = time.monotonic(), len(journal_done(progress))
        while (now := runner(tmp_path))[0] in ("", name):
            assert time.monotonic() - t_kill < 30, "no worker took the batches over"
            time.sleep(0.2)
        assert now[1] != pid
        assert time.monotonic() - t_kill >= LEASE_S / 2, "taken over before the killed runner's lease lapsed"
        after = wait_rows(progress, before + 5)
        print(
            f"runner killed at row {before}: {now[0]} took over, rows again after {time.monotonic() - t_kill:.1f} s"
        )
        assert len(after) >= before + 5
        wait_rows(progress, 40)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        done = journal_done(progress)
        assert 40 <= len(done) < ROWS - 20, "the gateway should have been killed mid-batch"
        hits_before = up.hits
        server = start_server(tmp_path, "--config", str(cfg), "--workers", "2")
        client = sdk(server.url)
        deadline = time.monotonic() + 120
        while (batch := client.batches.retrieve(batch.id)).status not in ("completed", "failed", "cancelled"):
            assert time.monotonic() < deadline, batch
            time.sleep(0.5)
        assert batch.status == "completed"
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (ROWS, 0)
        assert batch.output_file_id is not None
        assert batch.error_file_id is None
        output = client.files.content(batch.output_file_id).text.splitlines()
        answers = [json.loads(x) for x in output]
        assert [a["custom_id"] for a in answers] == [f"row-{i}" for i in range(ROWS)]
        assert {a["response"]["body"]["choices"][0]["message"]["content"] for a in answers} == {
            "reply from up"
        }
        # rows recorded before the kill were not asked again; rows in flight at the kill were
        assert up.hits - hits_before == ROWS - len(done)
        assert [b.id for b in client.batches.list().data] == [batch.id]
        files_and_expiry(client, src, batch)
    finally:
        stop_server(server)
        up.stop()


def files_and_expiry(client: openai.OpenAI, src: Path, done: Batch) -> None:
    """``client.files.list/retrieve/delete`` and ``client.batches.list`` unchanged; a 1 s window expires."""
    assert done.output_file_id is not None
    with src.open("rb") as fh:
        again = client.files.create(file=fh, purpose="batch")
    inputs = [f.id for f in client.files.list(purpose="batch")]
    assert inputs == [again.id, done.input_file_id]  # newest first
    assert [f.id for f in client.files.list(purpose="batch", limit=1, order="asc")] == inputs[::-1]  # paged
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"
    expiring = client.batches.create(
        input_file_id=again.id,
        endpoint="/v1/chat/completions",
        completion_window="1s",  # type: ignore[arg-type]
    )
    deadline = time.monotonic() + 60
    while (expiring := client.batches.retrieve(expiring.id)).status not in ("expired", "completed", "failed"):
        assert time.monotonic() < deadline, expiring
        time.sleep(0.2)
    assert expiring.status == "expired"
    assert expiring.error_file_id is not None
    counts = expiring.request_counts
    assert counts is not None
    assert (counts.completed < ROWS, counts.completed + counts.failed) == (True, ROWS)
    errors = [json.loads(x) for x in client.files.content(expiring.error_file_id).text.splitlines()]
    assert (errors[-1]["custom_id"], errors[-1]["error"]["code"]) == (f"row-{ROWS - 1}", "batch_expired")
    assert [b.id for b in client.batches.list(limit=1)] == [expiring.id, done.id]
    deleted = client.files.delete(again.id)
    assert (deleted.id, deleted.deleted) == (again.id, True)
    assert [f.id for f in client.files.list(purpose="batch")] == [done.input_file_id]
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(again.id)
