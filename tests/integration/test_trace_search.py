"""Text search over stored traces through the search index (SQLite FTS5 trigrams, PostgreSQL pg_trgm): the same
rows the plain substring test finds, for rare and common words, after deletes and updates, from the
dashboard's query and from ``llmdock traces list --text``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

import llmdock.store.trace_search as trace_search
from llmdock.feedback import Scope
from llmdock.store import Store, TraceRecord, list_traces, write_traces
from llmdock.store.models import Trace
from llmdock.store.trace_search import substring, text_match
from llmdock.ui.trace_query import TraceFilters, list_page

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WORDS = ["alpha", "Zanzibar", "50%_off", "naïve"]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def fill(store: Store, n: int) -> None:
    records = [
        TraceRecord(
            id=f"{i:032x}",
            created_at=NOW - timedelta(seconds=n - i),
            operation="chat",
            model="fake",
            status="error" if i % 10 == 0 else "ok",
            duration_ms=1.0,
            input={
                "messages": [
                    {"role": "user", "content": f"question {i} {WORDS[i % 4] if i % 7 == 0 else ''}"}
                ]
            },
            output=f"answer {i} " + ("ZANZIBAR sunset" if i % 50 == 3 else "common words here"),
        )
        for i in range(n)
    ]
    write_traces(store, records)


def ids(store: Store, needle: str, indexed: bool) -> set[str]:
    with store.session() as s:
        cond = text_match(s, needle) if indexed else substring(needle)
        return set(s.scalars(select(Trace.id).where(cond)))


def test_the_indexed_search_finds_exactly_the_rows_the_substring_test_finds(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(store, 600)
    monkeypatch.setattr(trace_search, "FTS_ROWS", 40)  # "common words" (600 rows) takes the scan path
    for needle in [
        "zanzibar",
        "ZANZ",
        "50%_off",
        "%_o",
        "naïve",
        "common words",
        "question 7 ",
        "ze",
        "nowhere",
    ]:
        assert ids(store, needle, indexed=True) == ids(store, needle, indexed=False), needle
    assert len(ids(store, "zanzibar", indexed=True)) > 12  # the answers (i % 50 == 3) and some questions


def test_pages_of_a_word_in_many_traces_are_the_newest_matches(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More matches than the ids step takes, too few for the newest rows to fill a page: PostgreSQL looks in
    growing time windows. Rows in a burst at the end (a thousand in 1 s, as the probe sees them) and in threes
    sharing a timestamp: each page and filter gives what the unindexed query gives."""
    n = 3000
    records = [
        TraceRecord(
            id=f"{(i * 7919) % n:032x}",  # ids not in time order
            created_at=NOW
            - (timedelta(minutes=(2000 - i) // 3) if i < 2000 else timedelta(microseconds=n - i)),
            operation="chat",
            model="rare" if i % 5 == 0 else "fake",
            status="ok",
            duration_ms=1.0,
            input={"messages": [{"role": "user", "content": f"question {i}"}]},
            output=f"answer {i} " + ("Zanzibar" if i % 17 == 0 and i < 2000 else "plain"),
        )
        for i in range(n)
    ]
    write_traces(store, records)
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE traces"))  # the row count the first window is sized from
    monkeypatch.setattr(trace_search, "PROBE_ROWS", 100)
    monkeypatch.setattr(trace_search, "PG_ID_ROWS", 20)
    monkeypatch.setattr(trace_search, "MAX_GROWTH", 2)  # several windows
    windows = []
    bitmap_only = trace_search._bitmap_only
    monkeypatch.setattr(trace_search, "_bitmap_only", lambda s: windows.append(1) or bitmap_only(s))

    def unindexed(model: str) -> list[str]:
        q = select(Trace.id).where(substring("zanzibar")).order_by(Trace.created_at.desc(), Trace.id.desc())
        q = q.where(Trace.model == model) if model else q
        return list(store.session().scalars(q))

    for model in ("", "rare"):
        pages, cursor = [], ""
        while True:
            rows, cursor = list_page(
                store, TraceFilters(text="zanzibar", model=model, after=cursor), Scope(None)
            )
            pages += [r.id for r in rows]
            if not cursor:
                break
        assert pages == unindexed(model), model
    assert len(pages) == len(range(0, 2000, 85))  # the "rare" model's matches: every 85th trace
    assert [t.id for t in list_traces(store, limit=60, text="zanzibar")] == unindexed("")[:60]
    if store.engine.dialect.name == "postgresql":
        assert windows  # the windowed search ran


def test_deleted_and_updated_traces_leave_the_index(store: Store) -> None:
    fill(store, 100)
    with store.engine.begin() as conn:
        conn.execute(Trace.__table__.delete().where(Trace.id == f"{3:032x}"))
        conn.execute(update(Trace).where(Trace.id == f"{53:032x}").values(output="now about kiwis"))
    assert ids(store, "zanzibar sunset", indexed=True) == set()  # its two answers: deleted, rewritten
    assert ids(store, "kiwis", indexed=True) == {f"{53:032x}"}


def test_the_dashboard_and_the_cli_query_search_newest_first(store: Store) -> None:
    fill(store, 300)
    rows, _ = list_page(store, TraceFilters(text="zanzibar sunset"), Scope(None))
    assert [r.id for r in rows] == [f"{i:032x}" for i in (253, 203, 153, 103, 53, 3)]
    errors = list_traces(store, limit=3, status="error", text="ANSWER 2")
    assert [t.id for t in errors] == [f"{i:032x}" for i in (290, 280, 270)]


def test_sqlite_uses_the_fts5_table(store: Store) -> None:
    if store.engine.dialect.name != "sqlite":
        with store.engine.connect() as conn:
            names = set(conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'traces'")))
        assert {"ix_traces_output_trgm", "ix_traces_input_trgm"} <= names
        return
    fill(store, 10)
    with store.engine.connect() as conn:
        found = conn.scalars(text("SELECT rowid FROM traces_fts WHERE traces_fts MATCH '\"sunset\"'")).all()
    assert len(found) == 1


def test_the_cli_lists_traces_by_text_and_purges_by_the_configured_rules(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        f"home: {home}\ninclude_builtin_models: false\nmodels:\n  fake: {{backend: fake}}\n"
        "default_model: fake\ndefault_embedding_model: ''\n"
        "retention:\n  rules:\n    - {model: fake, traces_days: 1}\n"
    )
    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    fill(store, 120)
    with store.engine.begin() as conn:  # 100 traces three days old, 20 new ones
        old = datetime.now(UTC) - timedelta(days=3)
        conn.execute(update(Trace).where(Trace.id < f"{100:032x}").values(created_at=old))
        conn.execute(update(Trace).where(Trace.id >= f"{100:032x}").values(created_at=datetime.now(UTC)))
    store.close()
    env = {**os.environ, "COLUMNS": "200"}

    def llmdock(*args: str) -> subprocess.CompletedProcess[str]:
        run = [sys.executable, "-m", "llmdock", *args, "--config", str(cfg)]
        return subprocess.run(run, capture_output=True, text=True, env=env, timeout=120, check=False)

    listed = llmdock("traces", "list", "--text", "zanzibar sunset", "--status", "ok")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1] for line in listed.stdout.splitlines() if "│ 0000" in line] == [
        f"{i:032x}"[:12] for i in (103, 53, 3)
    ]
    purged = llmdock("data", "purge")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout.strip() == "deleted 100 traces"
