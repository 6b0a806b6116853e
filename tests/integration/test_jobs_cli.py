"""`llmdock jobs run`: a pipeline YAML is checked whole before anything runs (file:line: field errors), then its
steps run in order with outputs passed by reference, and the run and its steps are stored for list/show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmdock.datasets.versions import Datasets
from llmdock.errors import ConfigError
from llmdock.jobs.pipeline_spec import load_pipeline
from llmdock.jobs.run_store import list_runs
from llmdock.plugins import load_plugins
from llmdock.registry import ModelRegistry
from llmdock.store import Store
from tests.integration.conftest import run_cli

DB = "sqlite:///{}/llmdock.db"
CONFIG = "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n  fake: {backend: fake}\n"
GOOD = """\
name: nightly
params:
  model: fake
  greeting: hello
steps:
  - id: score
    uses: batch.run
    with:
      input: in.jsonl
      output: out/scored.jsonl
      model: ${params.model}
  - id: count
    uses: shell
    with:
      run: wc -l ${steps.score.outputs.output}
  - id: echo
    uses: shell
    with:
      run: echo ${params.greeting} ${steps.score.outputs.answered} answered
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("uses: shell\n    with:\n      run: wc", "uses: shel\n    with:\n      run: wc"),
            ":13: steps.1.uses",
            "unknown step 'shel'",
        ),
        (
            ("${steps.score.outputs.output}", "${steps.score.outputs.rows}"),
            ":15: steps.1.with.run",
            "has no output 'rows'",
        ),
        (
            ("${steps.score.outputs.answered}", "${steps.echo.outputs.stdout}"),
            ":19: steps.2.with.run",
            "no step 'echo' runs before",
        ),
        (("${params.model}", "${params.modle}"), ":11: steps.0.with.model", "no parameter 'modle'"),
        (
            ("      output: out/scored.jsonl\n", "      output: out/scored.jsonl\n      concurrency: none\n"),
            ":11: steps.0.with.concurrency",
            "valid integer",
        ),
        (("  - id: count", "  - id: score"), ":12: steps.1.id", "used twice"),
    ],
)
def test_a_bad_pipeline_is_refused_whole_naming_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], where: str, message: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, load_plugins().job_steps, {})
    assert info.value.one_line().startswith(f"{path}{where}: ")
    assert message in info.value.one_line()


def test_a_pipeline_runs_its_steps_in_order_passing_outputs_and_is_stored(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(CONFIG)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}) + "\n" for i in range(5))
    )
    (tmp_path / "out").mkdir()
    path = write(tmp_path, GOOD)
    ran = run_cli(tmp_path, "jobs", "run", str(path), "--param", "greeting=hi")
    assert ran.returncode == 0, ran.stderr
    listed = run_cli(tmp_path, "jobs", "list")
    assert "nightly" in listed.stdout
    assert "succeeded" in listed.stdout
    run_id = ran.stderr.split("run ", 1)[1].split()[0]
    shown = run_cli(tmp_path, "jobs", "show", run_id, "--logs")
    assert shown.returncode == 0, shown.stderr
    assert f"5 {tmp_path / 'out' / 'scored.jsonl'}" in shown.stdout  # wc -l of the batch step's output
    assert "hi 5 answered" in shown.stdout  # a parameter from --param, an output by reference
    assert len((tmp_path / "out" / "scored.jsonl").read_text().splitlines()) == 5

    failing = write(tmp_path, GOOD.replace("run: wc -l", "run: false"))
    ran = run_cli(tmp_path, "jobs", "run", str(failing))
    assert ran.returncode == 1
    assert "failed count 'false " in ran.stderr
    assert "exited with 1" in ran.stderr
    assert "skipped echo" in " ".join(ran.stderr.split())


def test_a_misspelt_field_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    with:\n      run: wc", "    wiht:\n      run: wc"))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, load_plugins().job_steps, {})
    assert info.value.one_line().startswith(f"{path}:14: steps.1.wiht: Extra inputs are not permitted")


RELEASE = """\
name: release
params: {min_pass: 0.9}
steps:
  - id: data
    uses: datasets.import
    cache: true
    with: {file: chat.jsonl, name: capitals}
  - id: clean
    uses: datasets.clean
    cache: true
    with: {dataset: "${steps.data.outputs.dataset}", steps: ["dedup near=false"]}
  - id: evaluate
    uses: eval.run
    with: {suite: suite.yaml}
  - id: gate
    uses: eval.gate
    with:
      suite: suite.yaml
      run: ${steps.evaluate.outputs.run_id}
      min: {pass rate: "${params.min_pass}"}
  - id: register
    uses: models.register
    with: {name: tiny, path: tiny.gguf, metrics: {pass_rate: "${steps.evaluate.outputs.pass_rate}"}}
  - id: promote
    uses: models.promote
    if: ${steps.gate.passed}
    with: {model: "models:/tiny/${steps.register.outputs.version}", alias: production}
"""


def test_a_release_pipeline_imports_cleans_evaluates_gates_registers_and_promotes_only_on_a_pass(
    tmp_path: Path,
) -> None:
    (tmp_path / "llmdock.yaml").write_text(CONFIG)
    chat = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ok"}]} for q in "aab"
    ]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    cases = [{"id": c, "input": f"the capital of {c}", "expected": "capital"} for c in ("france", "japan")]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cases))
    (tmp_path / "suite.yaml").write_text(
        "name: capitals\ndataset: cases.jsonl\ntargets:\n  - model: fake\nassert:\n  - type: icontains\n"
    )
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF" + bytes(64))
    path = write(tmp_path, RELEASE)
    passed = run_cli(tmp_path, "jobs", "run", str(path))
    assert passed.returncode == 0, passed.stderr
    assert "succeeded promote" in " ".join(passed.stderr.split())
    failed_gate = run_cli(tmp_path, "jobs", "run", str(path), "--param", "min_pass=1.5")
    assert failed_gate.returncode == 0, failed_gate.stderr  # a gate that does not pass is an output
    assert "skipped promote if: ${steps.gate.passed} is false" in " ".join(failed_gate.stderr.split())
    store = Store(DB.format(tmp_path))
    registry = ModelRegistry(store, tmp_path)
    assert registry.labels.of("tiny") == {"production": 1}  # the second version was registered, not promoted
    assert [(r.version, r.metrics["pass_rate"]) for r in registry.versions("tiny")] == [(1, 1.0), (2, 1.0)]
    run_id = failed_gate.stderr.split("run ", 1)[1].split()[0]
    gate_log = run_cli(tmp_path, "jobs", "logs", run_id, "gate")
    assert "FAIL pass rate" in gate_log.stdout
    cleaned = Datasets(store, tmp_path).get("capitals")
    assert (cleaned.version, cleaned.rows) == (2, 2)  # the duplicate "a" dropped by the clean step
    assert "cached data" in " ".join(failed_gate.stderr.split())  # the same file: not imported again


def test_jobs_cancel_from_another_process_stops_a_running_pipeline(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    path = write(
        tmp_path,
        "steps:\n  - id: wait\n    uses: shell\n    with: {run: sleep 120}\n"
        "  - id: after\n    uses: shell\n    with: {run: echo never}\n",
    )
    store = Store(DB.format(tmp_path))  # migrated here first, not by two processes at once
    runner = subprocess.Popen(
        [sys.executable, "-m", "llmdock", "jobs", "run", str(path)],
        env={**os.environ, "LLMDOCK_HOME": str(tmp_path)},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list_runs(store, 1):
        assert time.monotonic() < deadline, runner.stderr
        time.sleep(0.2)
    run_id = list_runs(store, 1)[0].id[:12]
    t0 = time.monotonic()
    cancelled = run_cli(tmp_path, "jobs", "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 1
    assert time.monotonic() - t0 < 30  # not the 120 s of the sleep
    assert "cancelled wait" in " ".join(err.split())
    shown = run_cli(tmp_path, "jobs", "show", run_id)
    assert "cancelled" in shown.stdout
    again = run_cli(tmp_path, "jobs", "cancel", run_id)
    assert again.returncode == 2
    assert "has already cancelled" in again.stderr
