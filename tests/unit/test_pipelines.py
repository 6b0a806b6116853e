"""Pipelines beyond the first runner: retries with backoff, per-attempt timeouts, ``if:`` conditions, caching
of unchanged steps, cancel from elsewhere, and the checks that refuse a bad pipeline before anything runs."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llmdock.errors import ConfigError, Conflict
from llmdock.jobs import run_store
from llmdock.jobs.pipeline_run import RunOptions, run_pipeline
from llmdock.jobs.pipeline_spec import Pipeline, load_pipeline
from llmdock.plugins import load_plugins
from llmdock.store import Store

STEPS = load_plugins().job_steps


def no_rows() -> Any:
    raise AssertionError("no step here answers rows")


def pipeline(tmp_path: Path, text: str, **params: Any) -> Pipeline:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return load_pipeline(path, STEPS, params)


def run(tmp_path: Path, p: Pipeline, **options: Any) -> tuple[str, dict[str, Any]]:
    store = Store(f"sqlite:///{tmp_path / 'jobs.db'}")
    ran = asyncio.run(run_pipeline(p, STEPS, store, no_rows, options=RunOptions(**options)))
    _, steps = run_store.get_run(store, ran.id)
    return ran.status, {s.step_id: s for s in steps}


FLAKY = """\
steps:
  - id: flaky
    uses: shell
    retries: {retries}
    backoff_s: 0.01
    with:
      run: sh -c 'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; echo try $n; [ $n -ge 2 ]'
"""


def test_a_failing_step_is_retried_with_backoff_until_it_passes(tmp_path: Path) -> None:
    status, steps = run(tmp_path, pipeline(tmp_path, FLAKY.format(retries=3)))
    assert status == "succeeded"
    assert steps["flaky"].attempts == 3  # failed twice, passed on the third attempt
    assert "attempt 3 of 4" in steps["flaky"].log
    assert (tmp_path / "count").read_text().strip() == "3"


def test_a_step_out_of_retries_fails_the_run_with_its_last_error(tmp_path: Path) -> None:
    status, steps = run(tmp_path, pipeline(tmp_path, FLAKY.format(retries=1)))
    assert status == "failed"
    assert steps["flaky"].attempts == 2
    assert "exited with 1" in steps["flaky"].error


def test_a_step_past_its_timeout_is_stopped_and_its_process_killed(tmp_path: Path) -> None:
    text = """\
steps:
  - id: slow
    uses: shell
    timeout_s: 0.5
    with: {run: "sh -c 'echo $$; exec sleep 30'"}
  - id: after
    uses: shell
    with: {run: echo never}
"""
    t0 = time.monotonic()
    status, steps = run(tmp_path, pipeline(tmp_path, text))
    assert time.monotonic() - t0 < 10
    assert status == "failed"
    assert steps["slow"].error == "timed out after 0.5 s"
    assert steps["after"].status == "skipped"
    pid = int(steps["slow"].log.split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


GATED = """\
params: {{go: "yes"}}
steps:
  - id: gate
    uses: shell
    with: {{run: echo {verdict}}}
  - id: deploy
    uses: shell
    if: {condition}
    with: {{run: echo deployed}}
  - id: report
    uses: shell
    with: {{run: "echo after ${{steps.deploy.outputs.stdout}}"}}
  - id: always
    uses: shell
    with: {{run: echo done}}
"""


@pytest.mark.parametrize(
    ("verdict", "condition", "deployed"),
    [
        ("", "${steps.gate.stdout}", False),  # an empty output is false
        ("ok", "${steps.gate.stdout}", True),
        ("ok", "'!${steps.gate.stdout}'", False),
        ("ok", "${params.go}", True),
    ],
)
def test_if_runs_a_step_only_when_its_reference_is_true(
    tmp_path: Path, verdict: str, condition: str, deployed: bool
) -> None:
    status, steps = run(tmp_path, pipeline(tmp_path, GATED.format(verdict=verdict, condition=condition)))
    assert status == "succeeded"
    assert steps["deploy"].status == ("succeeded" if deployed else "skipped")
    assert steps["report"].status == ("succeeded" if deployed else "skipped")  # it uses deploy's output
    if not deployed:
        assert "is false" in steps["deploy"].error
        assert "deploy, which did not run" in steps["report"].error
    assert steps["always"].status == "succeeded"


CACHED = """\
cache: true
params: {file: data.txt}
steps:
  - id: count
    uses: shell
    with: {run: "sh -c 'wc -l < $0; date +%s%N' ${params.file}"}
  - id: fresh
    uses: shell
    cache: false
    with: {run: echo again}
"""


def test_an_unchanged_step_reuses_its_stored_outputs_and_an_edited_input_file_runs_again(
    tmp_path: Path,
) -> None:
    (tmp_path / "data.txt").write_text("a\nb\n")
    first_status, first = run(tmp_path, pipeline(tmp_path, CACHED))
    second_status, second = run(tmp_path, pipeline(tmp_path, CACHED))
    assert (first_status, second_status) == ("succeeded", "succeeded")
    assert first["count"].status == "succeeded"
    assert second["count"].status == "cached"
    assert second["count"].outputs == first["count"].outputs  # the same nanosecond stamp: not run again
    assert second["count"].cached_from == first["count"].run_id
    assert second["fresh"].status == "succeeded"  # cache: false on the step
    _, no_cache = run(tmp_path, pipeline(tmp_path, CACHED), use_cache=False)
    assert no_cache["count"].status == "succeeded"
    assert no_cache["count"].outputs != first["count"].outputs
    (tmp_path / "data.txt").write_text("a\nb\nc\n")  # the same inputs, another file content: a miss
    _, edited = run(tmp_path, pipeline(tmp_path, CACHED))
    assert edited["count"].status == "succeeded"
    assert edited["count"].outputs["stdout"].startswith("3")
    _, other = run(tmp_path, pipeline(tmp_path, CACHED.replace("date +%s%N", "date +%s%N;")))
    assert other["count"].status == "succeeded"  # another command: a miss


def test_a_cancel_from_elsewhere_stops_the_running_step_and_the_rest(tmp_path: Path) -> None:
    text = """\
steps:
  - id: long
    uses: shell
    with: {run: "sh -c 'echo $$; exec sleep 60'"}
  - id: next
    uses: shell
    with: {run: echo never}
"""
    p = pipeline(tmp_path, text)
    other = Store(f"sqlite:///{tmp_path / 'jobs.db'}")  # another connection, as another process would have
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(run=run(tmp_path, p, poll_s=0.1)))
    t0 = time.monotonic()
    thread.start()
    log = ""
    while not log:  # the step is running and has flushed its first line (the shell's pid)
        assert time.monotonic() - t0 < 20
        time.sleep(0.05)
        runs = run_store.list_runs(other, 1)
        log = run_store.get_run(other, runs[0].id)[1][0].log if runs else ""
    pid = int(log.split()[0])
    run_store.cancel_run(other, runs[0].id[:8])
    thread.join(10)
    status, steps = result["run"]
    assert status == "cancelled"
    assert steps["long"].status == "cancelled"
    assert steps["next"].status == "cancelled"
    assert time.monotonic() - t0 < 15  # not the 60 s of the sleep
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(Conflict):
        run_store.cancel_run(other, runs[0].id)


BASE = """\
params: {n: 1}
steps:
  - id: a
    uses: shell
    with: {run: echo a}
  - id: b
    uses: shell
    with: {run: echo b}
"""


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("with: {run: echo a}", "with: {run: 'echo ${steps.b.outputs.stdout}'}"),
            ":5: steps.0.with.run",
            "no step 'b' runs before this one: it runs after this one",
        ),
        (
            ("with: {run: echo a}", "with: {run: 'echo ${steps.a.stdout}'}"),
            ":5: steps.0.with.run",
            "no step 'a' runs before this one: it runs after",
        ),  # itself: a cycle of one
        (
            ("with: {run: echo b}", "if: ${steps.a.passed}\n    with: {run: echo b}"),
            ":8: steps.1.if",
            "step 'a' has no output 'passed' (it has stdout, exit_code)",
        ),
        (
            ("with: {run: echo b}", "if: steps.a.stdout\n    with: {run: echo b}"),
            ":8: steps.1.if",
            "a condition is one reference",
        ),
        (
            ("with: {run: echo b}", "if: ${steps.zz.stdout}\n    with: {run: echo b}"),
            ":8: steps.1.if",
            "no step 'zz' runs before this one: there is no such step",
        ),
        (
            ("uses: shell\n    with: {run: echo b}", "uses: eval.gates\n    with: {run: echo b}"),
            ":7: steps.1.uses",
            "unknown step 'eval.gates'",
        ),
        (
            ("params: {n: 1}", "params: {n: 1}\nschedule: {cron: '0 25 * * *'}"),
            ":2: schedule.cron",
            "'0 25 * * *' is not a cron expression",
        ),
        (
            ("params: {n: 1}", "params: {n: 1}\nschedule:\n  cron: '0 3 * * *'\n  tz: Europe/Berlln"),
            ":4: schedule.tz",
            "'Europe/Berlln' is not a time zone",
        ),
        (
            ("with: {run: echo b}", "retries: -1\n    with: {run: echo b}"),
            ":8: steps.1.retries",
            "greater than or equal to 0",
        ),
        (("with: {run: echo b}", "with: {suite: x.yaml}"), ":8: steps.1.with", "Field required"),
    ],
)
def test_a_bad_pipeline_is_refused_before_anything_runs(
    tmp_path: Path, change: tuple[str, str], where: str, message: str
) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(BASE.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, STEPS, {})
    assert info.value.one_line().startswith(f"{path}{where}")
    assert message in info.value.one_line()
    assert not (tmp_path / "jobs.db").exists()


def test_every_step_kind_of_the_issue_is_a_registered_plugin() -> None:
    kinds = {"shell", "batch.run", "datasets.import", "datasets.clean", "eval.run", "eval.gate",
             "models.register", "models.promote", "scan"}  # fmt: skip
    assert kinds <= set(STEPS)
    assert STEPS["eval.gate"].outputs[0] == "passed"


def test_the_docs_example_checks_and_the_docs_list_every_registered_step(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "jobs.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    p = pipeline(tmp_path, example)
    assert [s.uses for s in p.steps][-2:] == ["models.register", "models.promote"]
    assert p.schedule is not None
    assert p.schedule.tz == "Europe/Berlin"
    for name in STEPS:
        assert f"| `{name}` |" in doc, name
