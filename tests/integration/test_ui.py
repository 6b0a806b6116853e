"""The dashboard (/ui) in process, on the fake backend: sign-in, sessions, CSRF, roles, team scoping, filters
and keyset pages, prompts (diff, promote, roll back), and bad input answered with pages, not tracebacks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmdock.gateway import create_app
from llmdock.privacy.gdpr import subject_pseudonym
from llmdock.runtime import Runtime
from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.trace_records import SpanRecord, TraceRecord
from llmdock.store.traces import write_traces
from tests.conftest import fake_settings

ACTOR = Actor("test", "ui")
HOSTILE = "<script>alert(1)</script>"
T0 = datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = Runtime(fake_settings(tmp_path))
    with TestClient(create_app(runtime)) as client:
        yield client, runtime


def record(i: int, **fields: Any) -> TraceRecord:
    at = fields.pop("created_at", T0 + timedelta(seconds=i))
    spans = [
        SpanRecord("preprocess", at, 1.0),
        SpanRecord("guard_in", at + timedelta(milliseconds=1), 3.0),
        SpanRecord(
            "guard_in.pii", at + timedelta(milliseconds=1), 2.0, "ok", {"score": 1.0, "flagged": True}
        ),
        SpanRecord("generate", at + timedelta(milliseconds=4), 10.0),
    ]
    values: dict[str, Any] = {"model": "fake", "status": "ok", "duration_ms": 15.0, "output": f"answer {i}"}
    return TraceRecord(id=f"t{i:05d}", created_at=at, operation="chat", spans=spans, **(values | fields))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def keys(runtime: Runtime) -> dict[str, str]:
    """Keys of an admin, and of a viewer, developer and service user of team blue; a viewer of team red."""
    d = runtime.auth.directory
    assert d is not None
    d.create_team("blue", ACTOR)
    d.create_team("red", ACTOR)
    out = {}
    for user, role, team in [
        ("root", "admin", None),
        ("vera", "viewer", "blue"),
        ("dev", "developer", "blue"),
        ("svc", "service", "blue"),
        ("rita", "viewer", "red"),
    ]:
        d.create_user(user, ACTOR, role=role, team=team)
        out[user], _ = d.create_key(user, ACTOR)
    runtime.auth.refresh()
    return out


def sign_in(client: TestClient, key: str) -> Any:
    form = client.get("/ui/login")
    return client.post("/ui/login", data={"key": key, "csrf": csrf_of(form.text), "next": "/ui/traces"})


def team_id(runtime: Runtime, name: str) -> str:
    assert runtime.auth.directory is not None
    return runtime.auth.directory.team(name).id


def test_with_auth_off_the_local_admin_sees_traces_and_stored_html_stays_text(app: Any) -> None:
    client, runtime = app
    chat = {"model": "fake", "messages": [{"role": "user", "content": f"hi {HOSTILE}"}]}
    assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert runtime.writer.flush(10)
    page = client.get("/ui/traces")
    assert page.status_code == 200
    assert "Auth is off" in page.text
    assert "local admin" in page.text
    assert HOSTILE not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    trace_id = re.search(r'href="/ui/traces/(\w+)"', page.text).group(1)  # type: ignore[union-attr]
    trace = client.get(f"/ui/traces/{trace_id}")
    assert trace.status_code == 200
    assert HOSTILE not in trace.text
    assert trace.text.count("&lt;script&gt;") >= 2  # the request and the answer, as text
    assert "<script" not in re.sub(r'<script src="/ui/static/[\w.]+" defer></script>', "", trace.text)
    assert "script-src 'self'" in trace.headers["content-security-policy"]
    assert ">generate<" in trace.text
    assert "margin-left:" in trace.text


def test_unknown_ids_and_pages_answer_404_pages(app: Any) -> None:
    client, _ = app
    for path in ("/ui/traces/nope", "/ui/prompts/nope", "/ui/no-such-page"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["content-type"].startswith("text/html")
        assert "<h1>Not found</h1>" in resp.text


def test_malformed_filters_are_named_on_the_page(app: Any) -> None:
    client, _ = app
    resp = client.get("/ui/traces?since=yesterday&min_ms=-3&status=maybe&after=%%%")
    assert resp.status_code == 400
    problems = re.findall(r'class="problem" role="alert">([^<]*)<', resp.text)
    assert [p.split(":")[0] for p in problems] == ["status", "since", "min_ms", "after"]
    partial = client.get("/ui/traces?min_ms=x", headers={"hx-request": "true", "hx-target": "results"})
    assert partial.status_code == 200
    assert "<html" not in partial.text
    assert "min_ms:" in partial.text


def test_keyset_pages_and_filters(app: Any) -> None:
    client, runtime = app
    records = [record(i) for i in range(110)]
    records += [record(200, status="error", duration_ms=900.0, output=f"boom {HOSTILE}")]
    records += [record(201, model="other", created_at=T0 - timedelta(days=2))]
    secret = runtime.auth.secret
    records += [record(202, subject="alice"), record(203, subject=subject_pseudonym(secret, "alice"))]
    write_traces(runtime.store, records)
    seen: list[str] = []
    url = "/ui/traces"
    while url:
        page = client.get(url)
        seen += re.findall(r'href="/ui/traces/(t\d+)"', page.text)
        nxt = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert seen == sorted(
        seen, key=lambda t: (t not in ("t00200", "t00202", "t00203"), t == "t00201", -int(t[1:]))
    )
    assert len(seen) == len(set(seen)) == 114

    def ids(query: str) -> set[str]:
        return set(re.findall(r'href="/ui/traces/(t\d+)"', client.get(f"/ui/traces?{query}").text))

    assert ids("status=error") == {"t00200"}
    assert ids("user=alice") == {"t00202", "t00203"}  # as given, and as its pseudonym (privacy.pii)
    assert ids("model=other") == {"t00201"}
    assert ids("min_ms=500") == {"t00200"}
    assert ids("text=BOOM") == {"t00200"}
    assert ids("text=%25") == set()  # a LIKE wildcard typed is a character
    since = (T0 - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert "t00201" not in ids(f"since={since}")
    assert len(ids(f"since={since}")) == 50
    assert ids(f"until={since}") == {"t00201"}


def test_sign_in_roles_csrf_and_team_scope(app: Any) -> None:
    client, runtime = app
    k = keys(runtime)
    write_traces(
        runtime.store,
        [record(1, team_id=team_id(runtime, "blue")), record(2, team_id=team_id(runtime, "red"))],
    )
    to_login = client.get("/ui/traces?model=fake", follow_redirects=False)
    assert to_login.status_code == 303
    assert to_login.headers["location"].startswith("/ui/login?next=")
    assert sign_in(client, "ldk_not_a_real_key_at_all").status_code == 401
    assert "may not use the dashboard" in sign_in(client, k["svc"]).text
    no_csrf = client.post("/ui/login", data={"key": k["vera"], "csrf": "forged"})
    assert no_csrf.status_code == 403

    signed = client.post(
        "/ui/login",
        data={
            "key": k["vera"],
            "csrf": csrf_of(client.get("/ui/login").text),
            "next": "https://evil.example/",
        },
        follow_redirects=False,
    )
    assert signed.status_code == 303
    assert signed.headers["location"] == "/ui/traces"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/ui" in cookie
    assert k["vera"] not in signed.headers["set-cookie"]
    page = client.get("/ui/traces")
    assert "t00001" in page.text
    assert "t00002" not in page.text
    assert client.get("/ui/traces/t00002").status_code == 404  # red's trace: as if unknown
    assert client.get("/ui/traces/t00001").status_code == 200

    client.cookies.clear()
    sign_in(client, k["root"])
    page = client.get("/ui/traces")
    assert "t00001" in page.text
    assert "t00002" in page.text


def test_viewer_may_not_promote_developer_may_and_it_is_audited(app: Any) -> None:
    client, runtime = app
    k = keys(runtime)
    registry = runtime.prompts.registry
    for text in ("Hello {{ name }}", f"Hi {{{{ name }}}}, {HOSTILE}"):
        registry.create("greet", ACTOR, kind="text", template=text)
    registry.labels.set("greet", "production", 1, ACTOR)

    sign_in(client, k["vera"])
    page = client.get("/ui/prompts/greet")
    assert "may look, not move labels" in page.text
    assert HOSTILE not in page.text
    refused = client.post(
        "/ui/prompts/greet/promote", data={"label": "production", "version": "2", "csrf": csrf_of(page.text)}
    )
    assert refused.status_code == 403
    diff = client.get("/ui/prompts/greet/diff?a=1&b=2")
    assert '<span class="del">-Hello {{ name }}</span>' in diff.text
    assert '<span class="add">+Hi {{ name }}, &lt;script&gt;' in diff.text
    assert client.get("/ui/prompts/greet/diff?a=1&b=x").status_code == 400
    assert client.get("/ui/prompts/greet/diff?a=1&b=9").status_code == 404

    client.cookies.clear()
    sign_in(client, k["dev"])
    page = client.get("/ui/prompts/greet")
    no_token = client.post("/ui/prompts/greet/promote", data={"label": "production", "version": "2"})
    assert no_token.status_code == 403
    assert registry.labels.get("greet", "production") == 1
    moved = client.post(
        "/ui/prompts/greet/promote", data={"label": "production", "version": "2", "csrf": csrf_of(page.text)}
    )
    assert moved.status_code == 200
    assert "production now points at version 2 (was version 1)" in moved.text
    assert registry.labels.get("greet", "production") == 2
    back = client.post("/ui/prompts/greet/rollback", data={"label": "production", "csrf": csrf_of(page.text)})
    assert "rolled back to version 1" in back.text
    assert registry.labels.get("greet", "production") == 1
    rows = audit.list_rows(runtime.store, limit=5)
    assert [r.action for r in rows[:2]] == ["prompt.rollback", "prompt.promote"]
    assert all("dev" in r.actor and "dashboard" in r.actor for r in rows[:2])
    bad = client.post(
        "/ui/prompts/greet/promote", data={"label": "Bad Label", "version": "1", "csrf": csrf_of(page.text)}
    )
    assert bad.status_code == 400
    assert "lower-case letters" in bad.text


def test_revoking_the_key_or_signing_out_ends_the_session(app: Any) -> None:
    client, runtime = app
    k = keys(runtime)
    sign_in(client, k["vera"])
    assert client.get("/ui/traces").status_code == 200
    page = client.get("/ui/traces")
    out = client.post("/ui/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/traces", follow_redirects=False).status_code == 303

    sign_in(client, k["vera"])
    assert client.get("/ui/traces").status_code == 200
    assert runtime.auth.directory is not None
    runtime.auth.directory.revoke(k["vera"][:16], ACTOR)
    assert client.get("/ui/traces", follow_redirects=False).status_code == 303


def test_monitoring_static_files_and_path_tricks(app: Any) -> None:
    client, runtime = app
    k = keys(runtime)
    write_traces(runtime.store, [record(1), record(2, status="error")])
    sign_in(client, k["root"])
    page = client.get("/ui/monitoring?period=24h")
    assert page.status_code == 200
    assert 'id="chart-data"' in page.text
    assert '"requests": [2.0]' in page.text
    assert client.get("/ui/monitoring?period=1y").status_code == 400
    assert client.get("/ui/static/htmx.min.js").status_code == 200
    assert client.get("/ui/static/uPlot.iife.min.js").status_code == 200
    client.cookies.clear()
    viewer = {"authorization": f"Bearer {k['vera']}"}
    for path in ("/ui/../admin/keys", "/ui/static/../../admin/keys", "/ui%2f../admin/keys"):
        resp = client.get(path, headers=viewer, follow_redirects=False)
        assert resp.status_code in (303, 403, 404), path  # never the admin API's answer to a viewer


def test_an_evaluation_run_its_intervals_and_its_report(app: Any) -> None:
    from llmdock.evaluate.case import Case, CaseResult, Output, Score
    from llmdock.evaluate.results import create_run, finish_run, save_result

    client, runtime = app
    create_run(runtime.store, "run0000000001", "capitals", "suite.yaml", "0" * 64, {}, 6, "test")
    for i in range(6):
        passed = i != 3
        case = Case(id=f"c{i}", input=HOSTILE if i == 0 else f"question {i}", expected="x")
        score = Score(value=1.0 if passed else 0.0, passed=passed, reason="")
        result = CaseResult(
            "fake",
            case.id,
            0,
            Output(text=f"answer {HOSTILE}", latency_ms=10.0 + i),
            {"icontains": score},
            float(passed),
            passed,
        )
        save_result(runtime.store, "run0000000001", case, result)
    finish_run(runtime.store, "run0000000001", "done")
    listing = client.get("/ui/evaluations")
    assert 'href="/ui/evaluations/run0000000001"' in listing.text
    page = client.get("/ui/evaluations/run0000000001")
    assert page.status_code == 200
    pass_rate = re.search(r"pass rate</th><td>([\d.]+) <small>\[([\d.]+), ([\d.]+)\] n=6", page.text)
    assert pass_rate is not None
    mean, low, high = (float(x) for x in pass_rate.groups())
    assert mean == pytest.approx(5 / 6, abs=1e-3)
    assert low < mean < high
    report = client.get("/ui/evaluations/run0000000001/report")
    assert report.status_code == 200
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert HOSTILE not in report.text
    assert client.get("/ui/evaluations/nope").status_code == 404


def test_monitoring_keeps_closed_hours_and_counts_the_open_one_live(app: Any) -> None:
    from sqlalchemy import func, select

    from llmdock.store.usage_rows import UsageHour

    client, runtime = app
    k = keys(runtime)
    blue, red = team_id(runtime, "blue"), team_id(runtime, "red")
    three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
    write_traces(
        runtime.store,
        [
            record(1, created_at=three_hours_ago, team_id=blue, duration_ms=100.0),
            record(2, created_at=three_hours_ago, team_id=blue, duration_ms=300.0, status="error"),
            record(3, created_at=three_hours_ago, team_id=red, duration_ms=50.0),
        ],
    )

    def totals(key: str) -> tuple[int, int, float]:
        client.cookies.clear()
        sign_in(client, key)
        page = client.get("/ui/monitoring?period=24h").text
        found = re.search(r"<p>(\d+) requests, (\d+) errors", page)
        mean = re.search(
            r"<td class=\"num\">([\d.,]+)</td><td class=\"num\">([\d.,]+)</td><td class=\"num\">[\d.]+</td></tr>",
            page,
        )
        assert found is not None
        assert mean is not None
        return int(found.group(1)), int(found.group(2)), float(mean.group(1).replace(",", ""))

    assert totals(k["root"]) == (3, 1, 150.0)  # every team: mean of 100, 300, 50
    assert totals(k["vera"]) == (2, 1, 200.0)  # team blue only
    with runtime.store.session() as s:
        kept = s.scalar(select(func.count()).select_from(UsageHour).where(UsageHour.team_id != "*"))
    assert kept == 2  # the closed hour, once per team
    write_traces(runtime.store, [record(4, created_at=datetime.now(UTC), team_id=blue)])
    assert totals(k["vera"])[:2] == (3, 1)  # the open hour is counted live
