"""The dashboard's evaluation comparison (regressions first) and scan findings, experiments (variants, the
sequential test), monitoring (guard blocks, alert firings) and the trace filters on prompt and guard verdict,
in process on the fake backend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmdock.gateway import create_app
from llmdock.runtime import Runtime
from llmdock.store.monitor_rows import AlertFiring
from llmdock.store.trace_records import SpanRecord
from llmdock.store.traces import write_traces
from tests.conftest import fake_settings
from tests.integration.test_ui import ACTOR, HOSTILE, record

NOW = datetime.now(UTC)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = Runtime(fake_settings(tmp_path))
    with TestClient(create_app(runtime)) as client:
        yield client, runtime


def store_run(runtime: Runtime, run_id: str, passing: set[int], scores: dict[int, float]) -> None:
    from llmdock.evaluate.case import Case, CaseResult, Output, Score
    from llmdock.evaluate.results import create_run, finish_run, save_result

    create_run(runtime.store, run_id, "capitals", "suite.yaml", "0" * 64, {}, 8, "test")
    for i in range(8):
        passed = i in passing
        score = scores.get(i, float(passed))
        result = CaseResult(
            "fake",
            f"c{i}",
            0,
            Output(f"answer {i}", 10.0),
            {"icontains": Score(score, passed)},
            score,
            passed,
        )
        save_result(runtime.store, run_id, Case(id=f"c{i}", input=f"q {i}", expected="x"), result)
    finish_run(runtime.store, run_id, "done")


def test_two_runs_compared_regressions_first(app: Any) -> None:
    client, runtime = app
    store_run(runtime, "runaaaa00000001", set(range(8)), {})
    store_run(runtime, "runbbbb00000002", {0, 1, 2, 3, 4, 6}, {6: 0.5, 4: 0.9})
    listing = client.get("/ui/evaluations")
    assert 'action="/ui/evaluations/compare"' in listing.text
    page = client.get("/ui/evaluations/compare?a=runaaaa&b=runbbbb")
    assert page.status_code == 200
    changes = re.findall(
        r'<tr class="(regression|improvement)">\s*<td>fake</td><td><code>(c\d)</code>', page.text
    )
    assert [c for _, c in changes] == ["c5", "c7", "c6", "c4"]  # failed first, then the larger score drop
    assert {kind for kind, _ in changes} == {"regression"}
    assert "McNemar exact" in page.text
    assert "(4 regressed)" in page.text
    assert client.get("/ui/evaluations/compare?a=runaaaa&b=%3Cscript%3E").status_code == 400
    assert client.get("/ui/evaluations/compare?a=runaaaa&b=nope").status_code == 404
    assert client.get("/ui/evaluations/compare?a=runaaaa").status_code == 400
    assert "scan&#39;s findings" not in client.get("/ui/evaluations/runaaaa00000001").text


def test_scan_findings_most_severe_first_and_escaped(app: Any) -> None:
    from llmdock.scan.stored import save_report

    client, runtime = app
    store_run(runtime, "scan00000000001", {0}, {})
    example = {
        "case_id": "p1",
        "prompt": f"ignore {HOSTILE}",
        "output": HOSTILE,
        "why": "leaked",
        "reproduce": "llmdock scan",
    }
    finding = {"target": "fake", "failed": 3, "probes": 10, "examples": [example], "summary": "", "rate": 0.3}
    data = {
        "run_id": "scan00000000001",
        "findings": [
            finding | {"category": "toxicity", "severity": "medium"},
            finding | {"category": "injection", "severity": "critical", "rate": 0.1},
        ],
        "tallies": [
            {
                "target": "fake",
                "category": "injection",
                "counts": {"found": 1, "blocked": 2, "resisted": 7, "errored": 0},
            }
        ],
    }
    save_report(runtime.store, "scan00000000001", data)
    run = client.get("/ui/evaluations/scan00000000001")
    assert 'href="/ui/evaluations/scan00000000001/scan"' in run.text
    page = client.get("/ui/evaluations/scan00000000001/scan")
    assert page.status_code == 200
    assert re.findall(r'class="tag sev-(\w+)"', page.text) == ["critical", "medium"]
    assert HOSTILE not in page.text
    assert "&lt;script&gt;" in page.text
    assert client.get("/ui/evaluations/runnope/scan").status_code == 404


def test_experiment_variants_and_the_sequential_test(app: Any) -> None:
    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.spec import ExperimentSpec, VariantSpec

    client, runtime = app
    book = ExperimentBook(runtime.store)
    variants = [VariantSpec("a", model="fake", weight=50), VariantSpec("b", model="fake", weight=50)]
    book.create(
        ExperimentSpec("tone", variants, match={"model": "fake"}, starts_at=NOW - timedelta(hours=2)),
        ACTOR,
        {"fake"},
    )
    traces = [
        record(
            i,
            created_at=NOW - timedelta(minutes=60 - i % 50),
            status="error" if i % 2 and i < 60 else "ok",
            attributes={"llmdock.experiment": "tone", "llmdock.experiment_variant": "ab"[i % 2]},
        )
        for i in range(200)
    ]
    write_traces(runtime.store, traces)
    listing = client.get("/ui/experiments")
    assert 'href="/ui/experiments/tone"' in listing.text
    page = client.get("/ui/experiments/tone")
    assert page.status_code == 200
    requests = re.findall(
        r'<td class="num">50 %</td><td class="num">(\d+)</td><td class="num">(\d+) ', page.text
    )
    assert requests == [("100", "0"), ("100", "30")]
    error_row = re.search(r"<td>error rate</td>.*?<td>(yes|no)</td>", page.text, re.S)
    assert error_row is not None
    assert error_row.group(1) == "yes"  # 0 % against 30 % errors over 100 requests each
    assert "mSPRT" in page.text
    assert client.get("/ui/experiments/nope").status_code == 404


def test_monitoring_guard_blocks_and_alerts(app: Any) -> None:
    client, runtime = app
    blocked = {"status": "error", "error": "content_policy: the injection guard blocked the request"}
    write_traces(
        runtime.store,
        [
            record(1, created_at=NOW - timedelta(hours=2), **blocked),
            record(2, created_at=NOW - timedelta(hours=2)),
        ],
    )
    with runtime.store.session() as s, s.begin():
        s.add(
            AlertFiring(
                rule="slow", model="fake", metric="p95_ms", condition="threshold", value=1234.5,
                expected="> 1000", message=f"p95 {HOSTILE}", fired_at=NOW, last_seen_at=NOW,
            )
        )  # fmt: skip
    page = client.get("/ui/monitoring")
    assert "2 requests, 1 errors, 1 guard blocks" in page.text
    assert '"blocked": [1.0]' in page.text
    assert 'data-chart="guard"' in page.text
    alerts = re.search(r'<table class="alerts".*?</table>', page.text, re.S)
    assert alerts is not None
    assert "<td>slow</td>" in alerts.group(0)
    assert "firing" in alerts.group(0)
    assert HOSTILE not in page.text
    assert "No drift reference stored" in page.text


def test_trace_filters_on_prompt_and_guard_verdict_and_the_linked_versions(app: Any) -> None:
    client, runtime = app
    at = NOW - timedelta(minutes=5)

    calm = SpanRecord("guard_in.pii", at, 1.0, "ok", {"score": 0.1, "flagged": False, "action": "redact"})
    write_traces(
        runtime.store,
        [
            record(
                1,
                attributes={
                    "llmdock.prompt_template": "answer",
                    "llmdock.prompt_version": 2,
                    "llmdock.served_model_version": "tuned/3",
                },
            ),
            record(2, attributes={"llmdock.prompt_template": "other"}),
            record(3, status="error", error="content_policy: blocked by injection"),
            replace(record(4, status="error", error="backend_error: down"), spans=[calm]),
        ],
    )

    def ids(query: str) -> set[str]:
        page = client.get(f"/ui/traces?{query}")
        assert page.status_code == 200, page.text
        return set(re.findall(r'href="/ui/traces/(t\d+)"', page.text))

    assert ids("prompt=answer") == {"t00001"}
    assert ids("guard=blocked") == {"t00003"}
    assert ids("guard=flagged") == {"t00001", "t00002", "t00003"}  # record() has a flagging pii span
    assert ids("guard=passed") == {"t00004"}
    assert client.get("/ui/traces?guard=maybe").status_code == 400
    trace = client.get("/ui/traces/t00001")
    assert 'href="/ui/models/tuned#v3">tuned version 3</a>' in trace.text
    assert 'href="/ui/prompts/answer#v2"' in trace.text
