"""`llmdock jobs schedule` and `llmdock jobs scheduler` for real: a per-second schedule fired by two scheduler
processes on one store runs each slot exactly once; bad cron and time zone flags are refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from llmdock.errors import ConfigError
from llmdock.jobs.schedule_spec import ScheduleSpec
from llmdock.jobs.schedules import add_schedule, fires
from llmdock.store import Store
from llmdock.store.jobs_rows import JobRun, JobSchedule, JobScheduleFire
from tests.integration.conftest import start_server, stop_server

PIPELINE = """\
name: tick
steps:
  - id: stamp
    uses: shell
    with: {run: "sh -c 'date +%s.%N >> stamps.txt'"}
"""


def test_two_schedulers_run_each_slot_of_a_per_second_schedule_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    added = cli("jobs", "schedule", str(tmp_path / "pipeline.yaml"), "--cron", "* * * * * *")
    assert added.exit_code == 0, added.output
    env = {**os.environ, "LLMDOCK_HOME": str(tmp_path)}
    schedulers = [
        subprocess.Popen(
            [sys.executable, "-m", "llmdock", "jobs", "scheduler", "--tick", "0.2", "--for", "6"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in schedulers]
    assert [p.returncode for p in schedulers] == [0, 0], outs
    store = Store(f"sqlite:///{tmp_path / 'llmdock.db'}")
    with store.session() as s:
        slots = list(s.scalars(select(JobScheduleFire)))
        runs = s.scalar(select(func.count()).select_from(JobRun))
    assert len(slots) >= 2  # 6 s of per-second slots in each scheduler, overlapping (both start at once)
    assert {f.status for f in slots} == {"succeeded"}
    assert runs == len(slots)  # no slot ran twice, though both schedulers saw every one
    assert len({f.run_id for f in slots}) == len(slots)
    assert len((tmp_path / "stamps.txt").read_text().splitlines()) == len(slots)
    print(f"{len(slots)} slots, claimed by {sorted({f.claimed_by for f in slots})}")
    listed = cli("jobs", "schedules", env={"COLUMNS": "200"})
    assert "* * * * * *" in listed.output
    assert "succeeded" in listed.output


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """``llmdock ARGS`` in this process (the schedulers above are processes of their own)."""
    from typer.testing import CliRunner

    from llmdock.cli.main import app

    return CliRunner().invoke(app, list(args), env=env)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--cron", "0 25 * * *"], "--cron: '0 25 * * *' is not a cron expression"),
        (["--cron", "0 3 * * *", "--tz", "Berlin"], "--tz: 'Berlin' is not a time zone"),
        (["--cron", "0 3 * * *", "--misfire", "later"], "--misfire: Input should be 'skip' or 'run_once'"),
    ],
)
def test_a_bad_cron_or_time_zone_is_refused_naming_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], message: str
) -> None:
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    result = cli("jobs", "schedule", str(tmp_path / "pipeline.yaml"), *flags)
    assert isinstance(result.exception, ConfigError)  # main() prints it as one line and exits 2
    assert result.exception.one_line().startswith(message)
    with Store(f"sqlite:///{tmp_path / 'llmdock.db'}").session() as s:
        assert s.scalar(select(func.count()).select_from(JobSchedule)) == 0  # nothing was kept


@pytest.mark.server
def test_a_gateway_with_job_scheduler_on_fires_a_per_second_schedule(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    (tmp_path / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
        "job_scheduler: true\nmodels:\n  fake: {backend: fake}\n"
    )
    store = Store(f"sqlite:///{tmp_path / 'llmdock.db'}")
    add_schedule(store, tmp_path / "pipeline.yaml", {}, ScheduleSpec(cron="* * * * * *"), "test")
    server = start_server(tmp_path, "--config", str(tmp_path / "llmdock.yaml"))
    try:
        deadline = time.monotonic() + 60
        while len(done := [f for f in fires(store) if f.status == "succeeded"]) < 2:
            assert server.proc.poll() is None, server.log.read_text()[-3000:]
            assert time.monotonic() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        stop_server(server)
    with store.session() as s:
        runs = list(s.scalars(select(JobRun).where(JobRun.id.in_([f.run_id for f in done[:2]]))))
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert all(r.created_by.startswith("schedule ") for r in runs)
