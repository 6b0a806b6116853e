"""``examples/ci/eval-gate.yml`` is a valid GitHub Actions workflow (SchemaStore's schema, as check-jsonschema
vendors it) that gates the README's suite, and its shell steps work as the runner runs them: a push to main
records its run as the baseline, a pull request gates against that run, and a missed bound fails the job with
the JUnit XML written. The steps run here on a fake model instead of the 200 NQ-open questions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_eval_cli import FAKE_CONFIG, write_suite

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "eval-gate.yml"


def load_workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def step(name: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = load_workflow()["jobs"]["gate"]["steps"]
    return next(s for s in steps if s.get("name") == name)


@pytest.mark.parametrize("workflow", [WORKFLOW, ROOT / "examples" / "ci" / "release.yml"])
def test_the_workflow_validates_against_the_github_workflow_schema(workflow: Path) -> None:
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(workflow),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_workflow_gates_the_readme_suite_with_a_baseline_and_junit() -> None:
    suite = load_workflow()["env"]["SUITE"]
    assert (ROOT / suite).is_file()
    assert f"llmdock eval gate {suite} --baseline" in (ROOT / "README.md").read_text()
    script = step("Gate")["run"]
    assert 'llmdock eval gate "$SUITE" ${BASELINE:+--baseline "$BASELINE"} --junit eval-gate.xml' in script
    assert step("Gate")["env"] == {"BASELINE": "${{ inputs.baseline }}"}
    assert step("Publish the verdict")["with"]["report_paths"] == "eval-gate.xml"


def run_step(name: str, workspace: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One ``run:`` step as the runner runs it (bash -e; pipefail too, which the step must survive)."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step(name)["run"]],
        cwd=workspace,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def outputs(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines)


def test_a_push_records_the_baseline_and_a_pull_request_gates_against_it(tmp_path: Path) -> None:
    bin_dir, home = tmp_path / "bin", tmp_path / ".llmdock"
    bin_dir.mkdir()
    home.mkdir()
    (bin_dir / "llmdock").write_text(f'#!/bin/sh\nexec {sys.executable} -m llmdock "$@"\n')
    (bin_dir / "llmdock").chmod(0o755)
    (home / "llmdock.yaml").write_text(FAKE_CONFIG)
    rows = [{"id": f"q{i}", "input": f"question {i}", "expected": "question"} for i in range(5)]
    suite = write_suite(home, "fake", rows, "  - type: icontains\n")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SUITE": str(suite),
        "LLMDOCK_HOME": str(home),
        "LLMDOCK_CONFIG": str(home / "llmdock.yaml"),
        "BASELINE": "",
    }

    push = {**env, "GITHUB_OUTPUT": str(tmp_path / "push.out")}
    gated = run_step("Gate", tmp_path, push)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    run_id = outputs(tmp_path / "push.out")["run"]
    assert len(run_id) >= 12
    assert "baseline:" not in gated.stdout  # no baseline yet: the absolute bounds only
    kept = run_step("Keep main's run as the baseline", tmp_path, {**push, "RUN": run_id})
    assert kept.returncode == 0, kept.stderr
    assert (home / "baseline-run").read_text().strip() == run_id

    pull = {**env, "GITHUB_OUTPUT": str(tmp_path / "pull.out")}
    gated = run_step("Gate", tmp_path, pull)
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert f"baseline: run {run_id}" in gated.stdout
    assert "pass rate unchanged" in gated.stdout
    assert 'failures="0"' in (tmp_path / "eval-gate.xml").read_text()

    suite.write_text(suite.read_text() + "gate: {pass rate: 1.5}\n")  # a bound no run can meet
    failing = run_step("Gate", tmp_path, {**pull, "GITHUB_OUTPUT": str(tmp_path / "failing.out")})
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert "gate failed" in failing.stdout
    assert 'failures="1"' in (tmp_path / "eval-gate.xml").read_text()
    assert outputs(tmp_path / "failing.out")["run"] not in ("", run_id)
