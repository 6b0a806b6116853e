"""`llmdock batch run` as a real process against a stand-in upstream: killed with SIGKILL mid-batch and run
again, it answers only the rows not done and writes every row once, in input order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.upstream import Upstream

ROWS = 120
CONCURRENCY = 4


def batch_cmd(tmp_path: Path, src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "llmdock", "batch", "run", str(src), "-o", str(out), "--model", "up",
            "--concurrency", str(CONCURRENCY), "-c", str(tmp_path / "llmdock.yaml")]  # fmt: skip


def test_a_batch_killed_mid_way_resumes_without_redoing_rows_or_duplicating_them(tmp_path: Path) -> None:
    up = Upstream("up", delay=0.05)
    try:
        (tmp_path / "llmdock.yaml").write_text(
            f"home: {tmp_path}\ninclude_builtin_models: false\ndefault_model: up\ndefault_embedding_model: ''\n"
            "privacy:\n  pii: off\n"  # no PII models to load: each of the two runs starts sooner
            f"models:\n  up:\n    backend: openai_compat\n    base_url: {up.url}\n    upstream_model: m\n"
        )
        src = tmp_path / "in.jsonl"
        lines = [json.dumps({"custom_id": f"row-{i}", "body": {"messages": [{"role": "user", "content": f"q{i}"}]}})
                 for i in range(ROWS)]  # fmt: skip
        lines[10] = "{broken"
        src.write_text("\n".join(lines) + "\n")
        out = tmp_path / "out.jsonl"
        progress = tmp_path / "out.jsonl.progress"
        env = {**os.environ, "LLMDOCK_HOME": str(tmp_path)}
        proc = subprocess.Popen(
            batch_cmd(tmp_path, src, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 90
        recorded = 0
        while time.monotonic() < deadline and recorded < 30:
            time.sleep(0.05)
            recorded = len(progress.read_bytes().splitlines()) - 1 if progress.exists() else 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        first_hits = up.hits
        done = {int(x.split(b"\t")[0]) for x in progress.read_bytes().splitlines()[1:] if x.count(b"\t") >= 2}
        done_at_kill = len(done)
        assert 30 <= done_at_kill < ROWS - 20, "the batch should have been killed mid-way"
        assert not out.exists()  # no partial output

        resumed = subprocess.run(
            batch_cmd(tmp_path, src, out), env=env, capture_output=True, text=True, timeout=180
        )
        assert resumed.returncode == 0, resumed.stderr
        assert f"{ROWS} rows: {ROWS - 1} answered, 1 with an error" in resumed.stderr
        second_hits = up.hits - first_hits
        # rows recorded before the kill are not asked again (the broken line is never sent upstream)
        assert second_hits == len(set(range(ROWS)) - done - {10})
        answers = [json.loads(x) for x in out.read_text().splitlines()]
        assert [a["custom_id"] for a in answers] == [
            f"row-{i}" if i != 10 else "line-11" for i in range(ROWS)
        ]
        assert answers[10]["error"]["message"].startswith(f"{src}:11: not valid JSON")
        assert all(a["response"]["body"]["choices"][0]["message"]["content"] == "reply from up"
                   for i, a in enumerate(answers) if i != 10)  # fmt: skip
        assert not progress.exists()
    finally:
        up.stop()


@pytest.mark.model
def test_the_embedded_model_answers_a_batch_with_structured_output_and_traces(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    rows = [
        {"messages": [{"role": "user", "content": "What is the capital of Japan?"}], "max_tokens": 12},
        {"custom_id": "json", "body": {"messages": [{"role": "user", "content": "Name the capital of Japan."}],
         "max_tokens": 24, "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}}},
    ]  # fmt: skip
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "LLMDOCK_HOME": str(tmp_path), "LLMDOCK_N_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "llmdock", "batch", "run", str(src), "-o", str(out), "--model", "smollm2"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    plain, structured = (json.loads(x) for x in out.read_text().splitlines())
    assert plain["response"]["body"]["choices"][0]["message"]["content"]
    content = structured["response"]["body"]["choices"][0]["message"]["content"]
    assert isinstance(json.loads(content)["city"], str)  # the structured stage held the answer to the schema
    traces = subprocess.run(
        [sys.executable, "-m", "llmdock", "traces", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert structured["response"]["request_id"][:8] in traces.stdout
