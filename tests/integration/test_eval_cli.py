"""``llmdock eval`` as a user runs it: the real model answers a suite; a run killed with SIGKILL mid-way is
finished by ``--resume`` with nothing lost and nothing twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli

# The fake model's home. PII masking off: these tests are about runs, resumes and gates, and the Presidio engine
# that masking loads costs every `eval run` / `eval gate` process a second or two.
FAKE_CONFIG = (
    "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
    "models:\n  fake: {backend: fake}\nprivacy: {pii: 'off'}\n"
)
CAPITALS = [
    {"id": "france", "input": "What is the capital of France? Answer in one word.", "expected": "Paris"},
    {"id": "japan", "input": "What is the capital of Japan? Answer in one word.", "expected": "Tokyo"},
    {"id": "germany", "input": "What is the capital of Germany? Answer in one word.", "expected": "Berlin"},
]


def write_suite(
    home: Path, model: str, rows: list[dict[str, str]], checks: str, max_tokens: int = 24
) -> Path:
    (home / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = home / "suite.yaml"
    suite.write_text(
        f"name: capitals\ndataset: cases.jsonl\ntargets:\n  - model: {model}\n"
        f"    params: {{temperature: 0}}\nassert:\n{checks}max_tokens: {max_tokens}\nconcurrency: 3\n"
    )
    return suite


@pytest.mark.model
def test_the_embedded_model_runs_a_suite_and_the_run_can_be_shown_and_exported(tmp_path: Path) -> None:
    suite = write_suite(
        tmp_path, "smollm2", CAPITALS, "  - type: icontains\n  - type: rouge-l\n    threshold: 0\n", 8
    )  # one-word answers: 8 tokens hold them (nothing here depends on the answer's length)
    done = run_cli(tmp_path, "eval", "run", str(suite))
    assert done.returncode == 0, done.stderr
    assert "smollm2: 3 results, 0 errored" in done.stdout
    assert "pass rate" in done.stdout
    assert "rouge-l" in done.stdout
    listed = run_cli(tmp_path, "eval", "list")
    assert "capitals" in listed.stdout
    assert "3/3" in listed.stdout
    run_id = done.stderr.split("run ", 1)[1].split(":", 1)[0]
    shown = run_cli(tmp_path, "eval", "show", run_id[:8])
    assert shown.returncode == 0, shown.stderr
    assert "france" in shown.stdout
    out = tmp_path / "results.jsonl"
    exported = run_cli(tmp_path, "eval", "export", run_id[:8], "--format", "jsonl", "-o", str(out))
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["case_id"] for r in rows) == ["france", "germany", "japan"]
    assert all(r["trace_id"] and r["output"] for r in rows)  # real answers, each traced
    assert all(r["served"]["model"] == "smollm2" for r in rows)


def test_a_run_killed_mid_way_is_finished_by_resume_without_loss_or_duplicates(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: slow\ndefault_embedding_model: ''\n"
        "models:\n  slow: {backend: fake, delay_s: 0.15}\nprivacy: {pii: 'off'}\n"
    )
    rows = [{"id": f"q{i}", "input": f"question {i}", "expected": "answer"} for i in range(40)]
    suite = write_suite(tmp_path, "slow", rows, "  - type: icontains\n")
    env = {**os.environ, "LLMDOCK_HOME": str(tmp_path), "LLMDOCK_CONFIG": str(tmp_path / "llmdock.yaml")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdock", "eval", "run", str(suite), "--concurrency", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = tmp_path / "llmdock.db"
    deadline = time.monotonic() + 180  # the client starting on a loaded machine: main took over 60 s there
    stored = 0
    while time.monotonic() < deadline and stored < 6:
        time.sleep(0.1)
        if db.exists():
            try:
                stored = sqlite3.connect(db).execute("select count(*) from eval_results").fetchone()[0]
            except sqlite3.OperationalError:  # the tables are not there yet
                stored = 0
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 6 <= stored < 40, "the run should have been killed mid-way"
    (run_id,) = sqlite3.connect(db).execute("select id from eval_runs").fetchone()
    resumed = run_cli(tmp_path, "eval", "run", str(suite), "--resume", run_id[:10], "--concurrency", "8")
    assert resumed.returncode == 0, resumed.stderr
    con = sqlite3.connect(db)
    keys = con.execute("select case_id from eval_results where run_id = ?", (run_id,)).fetchall()
    assert sorted(k for (k,) in keys) == sorted(r["id"] for r in rows)  # all 40, each once
    assert con.execute("select status from eval_runs").fetchone() == ("done",)


def test_the_gate_exits_1_on_a_missed_bound_and_writes_junit(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(FAKE_CONFIG)
    rows = [{"id": f"q{i}", "input": f"question {i}", "expected": "question"} for i in range(5)]
    suite = write_suite(tmp_path, "fake", rows, "  - type: icontains\n  - type: rouge-l\n    threshold: 0\n")
    first = run_cli(tmp_path, "eval", "run", str(suite))
    assert first.returncode == 0, first.stderr
    baseline = first.stderr.split("run ", 1)[1].split(":", 1)[0]
    junit = tmp_path / "gate.xml"
    passing = run_cli(tmp_path, "eval", "gate", str(suite), "--baseline", baseline, "--min", "pass rate=0.9")
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert "gate passed" in passing.stderr
    failing = run_cli(tmp_path, "eval", "gate", str(suite), "--min", "rouge-l=0.9", "--junit", str(junit))
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "rouge-l" in failing.stdout
    assert "below the minimum 0.9" in failing.stdout
    assert 'failures="1"' in junit.read_text()
