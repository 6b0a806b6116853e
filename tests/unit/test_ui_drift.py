"""Drift per day: the ``monitor.drift_days`` pipeline step (as a schedule runs it) keeps one point per model,
closed day and statistic; the monitoring page's chart endpoint returns them, its table lists what drifted,
and a team's viewer sees only the models its team's traces used."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from llmdock.gateway import create_app
from llmdock.jobs import run_store
from llmdock.jobs.pipeline_run import RunOptions, run_pipeline
from llmdock.jobs.pipeline_spec import load_pipeline
from llmdock.jobs.steps import Services
from llmdock.plugins import load_plugins
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from llmdock.store.traces import write_traces
from llmdock.store.ui_rows import UiDriftDay
from tests.conftest import fake_settings
from tests.integration.test_ui import keys, record, sign_in, team_id

TODAY = datetime.now(UTC).date()
YESTERDAY, BEFORE = TODAY - timedelta(days=1), TODAY - timedelta(days=2)


def day_of_traffic(model: str, team: str, day: date, start: int, *, changed: bool = False) -> list[Any]:
    """30 traces of ``model`` at noon on ``day``; ``changed``: long answers and half of them errors."""
    noon = datetime.combine(day, time(12), UTC)
    return [
        record(
            start + i,
            model=model,
            team_id=team,
            created_at=noon + timedelta(minutes=i),
            output=("a much longer answer than usual " * 6 if changed else f"short answer {i % 7}"),
            status="error" if changed and i % 2 else "ok",
            prompt_tokens=12 + i % 5,
            completion_tokens=(60 if changed else 6) + i % 4,
        )
        for i in range(30)
    ]


def no_serving() -> Any:
    raise AssertionError("drift points ask no served model")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, dict[str, str]]]:
    runtime = Runtime(fake_settings(tmp_path))
    with TestClient(create_app(runtime)) as client:
        yield client, runtime, keys(runtime)


def keep_points(runtime: Runtime, folder: Path) -> dict[str, Any]:
    """Run the pipeline a daily schedule would run; its step's outputs."""
    plugins = load_plugins()
    (folder / "drift.yaml").write_text(
        "name: drift-days\nsteps:\n  - id: drift\n    uses: monitor.drift_days\n    with: {days: 2}\n"
    )
    pipeline = load_pipeline(folder / "drift.yaml", plugins.job_steps, {})
    services = Services(
        runtime.settings, runtime.store, Actor("test"), no_serving, plugins.metrics, plugins.dataset_steps
    )
    ran = asyncio.run(
        run_pipeline(
            pipeline, plugins.job_steps, runtime.store, no_serving, options=RunOptions(services=services)
        )
    )
    assert ran.status == "succeeded"
    _, steps = run_store.get_run(runtime.store, ran.id)
    return dict(steps[0].outputs)


def test_daily_points_are_kept_charted_and_scoped_to_the_teams_models(app: Any, tmp_path: Path) -> None:
    client, runtime, k = app
    blue, red = team_id(runtime, "blue"), team_id(runtime, "red")
    traces, n = [], 0
    for back in range(9, 0, -1):  # eight ordinary days, then yesterday's answers change
        day = TODAY - timedelta(days=back)
        traces += day_of_traffic("fake", blue, day, n, changed=day == YESTERDAY)
        traces += day_of_traffic("other", red, day, n + 30)
        n += 60
    write_traces(runtime.store, traces)

    first = keep_points(runtime, tmp_path)
    with runtime.store.session() as s:
        kept = {(r.model, r.day) for r in s.scalars(select(UiDriftDay))}
        drifted = set(s.scalars(select(UiDriftDay.statistic).where(UiDriftDay.drifted)))
        assert first["points"] == s.scalar(select(func.count()).select_from(UiDriftDay))
        assert first["drifted"] == len(drifted)  # yesterday's "fake" only
    assert first["days"] == 4
    assert kept == {(m, str(d)) for m in ("fake", "other") for d in (BEFORE, YESTERDAY)}
    assert {"output length (chars)", "error rate", "completion tokens"} <= drifted
    again = keep_points(runtime, tmp_path)
    assert again == {"days": 0, "points": 0, "drifted": 0}  # kept days are not computed again

    sign_in(client, k["root"])
    data = client.get("/ui/monitoring/drift.json?model=fake").json()
    assert data["days"] == [str(BEFORE), str(YESTERDAY)]
    lengths = next(s for s in data["series"] if s["statistic"] == "output length (chars)")
    assert lengths["drifted"] == [False, True]
    assert lengths["adjusted_p"][1] < 0.05 < lengths["adjusted_p"][0]
    page = client.get("/ui/monitoring")
    assert 'data-drift-src="/ui/monitoring/drift.json?model=fake"' in page.text
    assert re.findall(r"drift=(\w+)#c-drift", page.text) == ["fake", "other"]
    table = re.search(r'<table class="drifted".*?</table>', page.text, re.S)
    assert table is not None
    assert f"<td>{YESTERDAY}</td><td>output length (chars)</td>" in table.group(0)
    assert client.get("/ui/monitoring/drift.json?model=fake&days=0").status_code == 400
    assert client.get("/ui/monitoring/drift.json?model=nope").status_code == 404

    client.cookies.clear()
    sign_in(client, k["vera"])  # a viewer of team blue, whose traces used "fake" only
    assert client.get("/ui/monitoring/drift.json?model=fake").status_code == 200
    assert client.get("/ui/monitoring/drift.json?model=other").status_code == 404
    assert re.findall(r"drift=(\w+)#c-drift", client.get("/ui/monitoring").text) == ["fake"]
    assert client.get("/ui/monitoring?drift=other").status_code == 404
