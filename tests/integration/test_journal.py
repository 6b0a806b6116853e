"""The trace journal: what is appended before an answer leaves survives the process, and is stored once.

The first tests drive the journal and the writer directly (SQLite, and PostgreSQL under its marker); the last
ones kill real ``llmdock serve`` processes with SIGKILL under load and check that every trace id a client
received is in the store exactly once after a restart.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

import llmdock.store.journal as journal_module
from llmdock.config import Settings
from llmdock.store import Journal, Store, TraceWriter, count_traces, write_traces
from llmdock.store.ingest import read_status
from llmdock.store.journal import orphans, read_journal
from llmdock.store.models import Trace
from tests.integration.conftest import Server, start_server
from tests.integration.test_store import make_trace, tid
from tests.pgserver import PgServer

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
UNREACHABLE = "postgresql+psycopg://llmdock@127.0.0.1:1/none?connect_timeout=1"


def test_journal_reads_back_what_it_wrote_and_skips_a_torn_tail(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    written = [make_trace(tid(i), datetime(2026, 1, 2, 3, 4, 5, i, UTC), output=f"out {i}") for i in range(3)]
    assert [journal.append(rec) for rec in written] == [1, 2, 3]
    journal.close(remove=False)
    segment = next(journal.dir.glob("*.log"))
    with segment.open("ab") as f:
        f.write(b'deadbeef {"id": "torn by a kill -9 in the middle of a wri')  # never acknowledged
    back = list(read_journal(journal.dir))
    assert [r.id for r in back] == [r.id for r in written]
    assert back[1].created_at == written[1].created_at
    assert back[1].output == "out 1"
    assert [(s.name, s.started_at, s.attributes) for s in back[2].spans] == [
        (s.name, s.started_at, s.attributes) for s in written[2].spans
    ]
    assert all(r.replayed and r.seq == 0 for r in back)


def test_segments_go_once_every_trace_in_them_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 2000)
    journal = Journal(tmp_path)
    seqs = [journal.append(make_trace(tid(i))) for i in range(20)]
    segments = sorted(journal.dir.glob("*.log"))
    assert len(segments) > 3
    size = journal.size
    journal.stored(seqs[9])
    left = sorted(journal.dir.glob("*.log"))
    assert 0 < len(left) < len(segments)
    assert journal.size < size
    # What is left holds every trace not yet stored.
    assert {r.id for r in read_journal(journal.dir)} >= {tid(i) for i in range(10, 20)}
    journal.stored(seqs[-1])
    assert len(list(journal.dir.glob("*.log"))) == 1  # the segment being written stays
    journal.close(remove=True)
    assert not journal.dir.exists()


def test_a_live_process_journal_is_never_adopted(tmp_path: Path) -> None:
    first, second = Journal(tmp_path), Journal(tmp_path)
    assert list(orphans(tmp_path)) == []  # both locked by a living owner
    first.close(remove=False)  # as a kill -9 leaves it: the lock goes with the process
    assert list(orphans(tmp_path)) == [first.dir]
    second.close(remove=True)


def test_adopting_a_crashed_journal_stores_each_trace_once(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    root = tmp_path / "journal"
    crashed = Journal(root)
    records = [make_trace(tid(i)) for i in range(10)]
    for rec in records:
        crashed.append(rec)
    write_traces(store, records[:4])  # the writer had stored some before the crash
    crashed.close(remove=False)
    writer = TraceWriter(store, journal=Journal(root))
    try:
        assert writer.adopt_orphans() == 6
        assert not crashed.dir.exists()
        assert count_traces(store) == 10
        with store.session() as s:
            assert sum(len(spans) for spans in s.scalars(select(Trace.spans))) == 10 * 3
        assert writer.adopt_orphans() == 0
    finally:
        writer.close()
        store.close()


def test_journaled_traces_wait_in_the_journal_while_the_store_is_away(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    crashed = Journal(root)
    for i in range(5):
        crashed.append(make_trace(tid(i)))
    crashed.close(remove=False)
    store = Store(UNREACHABLE, migrate=False)
    writer = TraceWriter(store, flush_interval_s=0.05, journal=Journal(root))
    try:
        writer.adopt_orphans()
        assert not crashed.dir.exists()  # its traces moved to this process's journal
        assert writer.journal is not None
        assert {r.id for r in read_journal(writer.journal.dir)} == {tid(i) for i in range(5)}
        assert writer.status()["pending"] == 5
    finally:
        writer.close(timeout=0.5)
        store.close()
    # Not stored, so the journal stays for the next start.
    assert writer.journal.dir.exists()
    assert len(list(orphans(root))) == 1


async def test_a_full_journal_refuses_requests_while_the_store_is_away(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(database_url=UNREACHABLE)
    settings.trace.journal_max_mb = 0.002  # a couple of traces
    gw = await gateway_factory(settings)
    statuses = [(await gw.client.post("/v1/chat/completions", json=CHAT)).status_code for _ in range(6)]
    assert statuses[0] == 200
    assert statuses[-1] == 503
    answer = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert answer.json()["error"]["code"] == "store_unavailable"
    assert "journal is full" in answer.json()["error"]["message"]
    assert gw.runtime.writer is not None
    assert gw.runtime.writer.status()["dropped"] == 0


async def test_fsync_mode_answers_after_the_trace_is_on_disk(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    settings.trace.journal_sync = "fsync"
    gw = await gateway_factory(settings)
    ids = []
    for body in (CHAT, {**CHAT, "stream": True}):
        answer = await gw.client.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200
        ids.append(answer.headers["x-llmdock-trace-id"])
    assert gw.runtime.writer is not None
    assert gw.runtime.writer.journal is not None
    assert {r.id for r in read_journal(gw.runtime.writer.journal.dir)} >= set(ids)


# -- kill -9 of a real server under load ---------------------------------------------------------------


def _load(server: Server, answered: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=server.v1, timeout=10) as client:
        while not stop.is_set():
            try:
                answer = client.post("/chat/completions", json=CHAT)
            except httpx.HTTPError:
                return  # the server is gone
            if answer.status_code == 200:
                answered.append(answer.headers["x-llmdock-trace-id"])


def _kill_rounds(home: Path, store_url: str, rounds: int, *, kill_ingester: bool = False) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
        f"database_url: '{store_url}'\nmodels:\n  fake: {{backend: fake}}\n"
    )
    answered: list[str] = []
    rng = random.Random(7)
    for _ in range(rounds):
        server = start_server(home, "--config", str(home / "llmdock.yaml"))
        stop = threading.Event()
        clients = [threading.Thread(target=_load, args=(server, answered, stop)) for _ in range(8)]
        for c in clients:
            c.start()
        time.sleep(rng.uniform(0.5, 2.0))
        if kill_ingester:  # the process that stores the journals dies too; the server starts another
            os.kill(read_status(home / "journal")["pid"], signal.SIGKILL)
            time.sleep(rng.uniform(0.5, 3.0))
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        stop.set()
        for c in clients:
            c.join(timeout=15)
    assert len(answered) > 100
    server = start_server(home, "--config", str(home / "llmdock.yaml"))  # adopts the last journal
    try:
        store = Store(store_url, migrate=False)
        with store.session() as s:
            stored = dict(s.execute(select(Trace.id, func.count()).group_by(Trace.id)).all())
        store.close()
        missing = [t for t in answered if t not in stored]
        assert not missing, f"{len(missing)} of {len(answered)} answered requests have no trace"
        assert max(stored.values()) == 1
    finally:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=15)


@pytest.mark.server
def test_kill_9_under_load_loses_no_answered_trace_sqlite(tmp_path: Path) -> None:
    _kill_rounds(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'llmdock.db'}", rounds=3)


@pytest.mark.server
def test_kill_9_of_the_ingester_and_the_server_loses_no_answered_trace(tmp_path: Path) -> None:
    _kill_rounds(
        tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'llmdock.db'}", rounds=2, kill_ingester=True
    )


@pytest.mark.server
@pytest.mark.postgres
def test_kill_9_under_load_loses_no_answered_trace_postgres(tmp_path: Path, pg: PgServer) -> None:
    _kill_rounds(tmp_path / "home", pg.create_database(), rounds=3)
