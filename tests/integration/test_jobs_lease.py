"""A pipeline runner killed with SIGKILL leaves no run ``running`` forever: once its lease has run out the run
is ``failed: runner lost``, and ``llmdock jobs resume`` finishes it under the same id, keeping the steps that
had finished (they are not run again) and running the rest."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.jobs.run_store import get_run, list_runs
from llmdock.store import Store

PIPELINE = """\
name: long
steps:
  - id: first
    uses: shell
    with: {run: "sh -c 'echo ran >> first.count'"}
  - id: wait
    uses: shell
    with: {run: "sh -c 'test -f go || sleep 120; echo waited'"}
  - id: last
    uses: shell
    with: {run: echo done}
"""


def test_a_killed_runner_is_found_lost_and_its_run_resumed_from_the_last_finished_step(
    tmp_path: Path,
) -> None:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    store = Store(f"sqlite:///{tmp_path}/llmdock.db")  # migrated here first, not by two processes at once
    env = {**os.environ, "LLMDOCK_HOME": str(tmp_path)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "llmdock", "jobs", "run", str(tmp_path / "pipeline.yaml"), "--lease-s", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert time.monotonic() < deadline, "the runner never reached its second step"
            runs = list_runs(store, 1)
            if runs and get_run(store, runs[0].id)[1][1].status == "running":
                break
            time.sleep(0.2)
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and its step's sleep: a lost machine
        runner.wait()
    run_id = runs[0].id
    assert get_run(store, run_id)[0].status == "running"  # nobody has noticed yet
    time.sleep(2.5)  # the lease runs out

    cli = CliRunner()
    env_home = {"LLMDOCK_HOME": str(tmp_path)}
    shown = cli.invoke(app, ["jobs", "show", run_id[:12]], env=env_home)
    assert shown.exit_code == 0, shown.output
    run, steps = get_run(store, run_id)
    assert run.status == "failed"
    assert run.error.startswith("runner lost:")
    assert [s.status for s in steps] == ["succeeded", "failed", "pending"]
    assert steps[1].error == "runner lost"
    assert "runner lost" in shown.output

    (tmp_path / "go").touch()
    resumed = cli.invoke(app, ["jobs", "resume", run_id[:12]], env=env_home)
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    run, steps = get_run(store, run_id)
    assert run.status == "succeeded"
    assert run.error == ""
    assert [s.status for s in steps] == ["succeeded", "succeeded", "succeeded"]
    assert steps[1].outputs["stdout"] == "waited"
    assert (tmp_path / "first.count").read_text() == "ran\n"  # the finished step was kept, not run again
    again = cli.invoke(app, ["jobs", "resume", run_id[:12]], env=env_home)
    assert again.exit_code != 0
    assert "already succeeded" in str(again.exception)


def test_a_live_runner_keeps_its_run_past_its_lease_by_its_heartbeat(tmp_path: Path) -> None:
    from llmdock.jobs.pipeline_run import RunOptions, run_pipeline
    from llmdock.jobs.pipeline_spec import load_pipeline
    from llmdock.jobs.run_store import reap_lost
    from llmdock.plugins import load_plugins

    path = tmp_path / "p.yaml"
    path.write_text("steps:\n  - id: a\n    uses: shell\n    with: {run: sleep 2}\n")
    store = Store(f"sqlite:///{tmp_path}/llmdock.db")
    pipeline = load_pipeline(path, load_plugins().job_steps, {})
    reaped: list[list[str]] = []

    async def main() -> str:
        task = asyncio.ensure_future(
            run_pipeline(
                pipeline,
                load_plugins().job_steps,
                store,
                lambda: None,  # type: ignore[arg-type,return-value]
                options=RunOptions(lease_s=0.6),
            )  # fmt: skip
        )
        for _ in range(4):  # 4 x 0.4 s: well past the 0.6 s lease taken at the start
            await asyncio.sleep(0.4)
            reaped.append(await asyncio.to_thread(reap_lost, store))
        return (await task).status

    assert asyncio.run(main()) == "succeeded"
    assert reaped == [[], [], [], []]
