"""The Batch API of a real `llmdock serve` with two workers, through the openai SDK unchanged: killed with
SIGKILL mid-batch and started again on the same home, the batch completes with every line exactly once and
the rows done before the kill are not sent again."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import openai
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.upstream import Upstream

pytestmark = pytest.mark.server
ROWS = 120


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def journal_done(path: Path) -> set[int]:
    lines = path.read_bytes().splitlines()[1:] if path.exists() else []
    return {int(x.split(b"\t")[0]) for x in lines if x.count(b"\t") >= 2}


def test_a_batch_survives_a_killed_gateway_and_completes_every_line_once(tmp_path: Path) -> None:
    up = Upstream("up", delay=0.1)
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        "include_builtin_models: false\ndefault_model: up\ndefault_embedding_model: ''\n"
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
        deadline = time.monotonic() + 60
        while len(journal_done(progress)) < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()
        done = journal_done(progress)
        assert 25 <= len(done) < ROWS - 20, "the gateway should have been killed mid-batch"
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
    finally:
        stop_server(server)
        up.stop()
