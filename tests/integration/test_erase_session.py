"""``llmdock data erase --session ID``: one conversation's memory turns and traces go, audited under a
pseudonym; the same id in another team, a longer id that contains it, and the subject's other data stay."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.errors import InvalidRequest
from llmdock.store import Store, TraceRecord, write_traces
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.kb_rows import KbMemoryRow
from llmdock.store.models import AuditRow, Org, Team, Trace
from llmdock.store.trace_records import SpanRecord

NOW = datetime.now(UTC)


def trace(tid: str, team: str, session: str = "", status: str = "ok", **attrs: str) -> TraceRecord:
    """A trace as the gateway writes it: the memory span names the session the request continued."""
    spans = [SpanRecord("preprocess", NOW, 0.1, attributes=attrs)]
    if session:
        spans.append(SpanRecord("memory", NOW, 0.2, attributes={"llmdock.memory.session": session}))
    return TraceRecord(tid, NOW, "chat", "m", status, 1.0, subject="ana", team_id=team, spans=spans)


def turns(team: str, session: str, *trace_ids: str) -> list[KbMemoryRow]:
    return [
        KbMemoryRow(
            team_id=team,
            session=session,
            subject="ana",
            role=role,
            content=f"{session} {role}",
            trace_id=tid,
            created_at=NOW,
        )
        for tid in trace_ids
        for role in ("user", "assistant")
    ]


def seed(store: Store) -> None:
    with store.session() as s, s.begin():
        s.add(Org(id="o1", name="acme"))
        s.flush()
        s.add_all([Team(id="t1", org_id="o1", name="support"), Team(id="t2", org_id="o1", name="sales")])
        s.add_all(
            turns("t1", "chat-1", "tr1", "tr2") + turns("t2", "chat-1", "tr3") + turns("t1", "chat-10", "tr4")
        )
        s.add(
            FeedbackRow(
                id="f1", trace_id="tr1", created_at=NOW, source="user", comment="wrong", subject="ana"
            )
        )
    write_traces(
        store,
        [
            trace("tr1", "t1", "chat-1"),
            trace("tr2", "t1", "chat-1"),
            trace("tr3", "t2", "chat-1"),
            trace("tr4", "t1", "chat-10"),
            trace("tr5", "t1", "chat-1", status="error"),  # failed: stored no turns, still the conversation's
            trace("tr6", "t1", note="chat-1"),  # names the id, but not as its memory session
        ],
    )


def test_erasing_a_conversation_deletes_its_turns_and_traces_in_its_team_only(
    db_url: str, tmp_path: Path
) -> None:
    store = Store(db_url)
    seed(store)
    env = {"LLMDOCK_HOME": str(tmp_path), "LLMDOCK_DATABASE_URL": db_url}
    runner = CliRunner()

    both = runner.invoke(app, ["data", "erase", "--subject", "ana", "--session", "chat-1", "--yes"], env=env)
    assert isinstance(both.exception, InvalidRequest)
    assert both.exception.one_line() == "data erase: give exactly one of --subject and --session"
    ambiguous = runner.invoke(app, ["data", "erase", "--session", "chat-1", "--yes"], env=env)
    assert isinstance(ambiguous.exception, InvalidRequest)
    assert ambiguous.exception.one_line() == "--team: session 'chat-1' exists in teams 't1', 't2': name one"

    done = runner.invoke(app, ["data", "erase", "--session", "chat-1", "--team", "support", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["team"] == "t1"
    assert (report["memory_turns_deleted"], report["traces_deleted"], report["feedback_deleted"]) == (4, 3, 1)
    with store.session() as s:
        assert sorted(s.scalars(select(Trace.id))) == ["tr3", "tr4", "tr6"]
        left = s.execute(select(KbMemoryRow.team_id, KbMemoryRow.session).distinct()).all()
        assert sorted(left) == [("t1", "chat-10"), ("t2", "chat-1")]
        audit = s.scalars(select(AuditRow).order_by(AuditRow.seq.desc())).first()
    assert audit is not None
    assert audit.action == "data.erase_session"
    assert audit.target == report["session"]
    assert audit.target.startswith("session:")
    assert "chat-1" not in json.dumps(audit.after)

    rest = runner.invoke(app, ["data", "erase", "--session", "chat-1", "--yes"], env=env)  # one team left
    assert rest.exit_code == 0, rest.output
    assert json.loads(rest.stdout)["traces_deleted"] == 1
    store.close()
