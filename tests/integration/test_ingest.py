"""The trace ingester process: it stores what workers journal, each trace once, through crashes of either.

The first tests run :class:`Ingester` rounds in this process against journals written here (SQLite, and
PostgreSQL under its marker); the last ones run the real ingester process beside an
:class:`IngestedWriter` and kill it with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event

import llmdock.store.ingest as ingest_module
import llmdock.store.journal as journal_module
from llmdock.store import Journal, Store, count_traces, write_traces
from llmdock.store.ingest import CURSOR, LOW_NICE, MARKER, URL_ENV, Ingester, read_cursor, read_status
from llmdock.store.ingest_client import IngestedWriter
from tests.integration.test_store import make_trace, tid, wait_until

UNREACHABLE = "postgresql+psycopg://llmdock@127.0.0.1:1/none?connect_timeout=1"


def live_journal(root: Path, traces: int) -> Journal:
    """A serve worker's journal (marked for the ingester) holding ``traces`` traces."""
    journal = Journal(root)
    (journal.dir / MARKER).touch()
    for i in range(traces):
        journal.append(make_trace(tid(i)))
    return journal


def drain(ingester: Ingester, rounds: int = 50) -> None:
    for _ in range(rounds):
        if not ingester.run_once():
            return


def test_live_and_crashed_journals_are_stored_once_and_the_crashed_one_removed(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_BYTES", 3000)
    store = Store(db_url)
    root = tmp_path / "journal"
    crashed, live = Journal(root), Journal(root)
    (live.dir / MARKER).touch()  # a serve worker's journal (IngestedWriter marks it)
    for i in range(30):
        crashed.append(make_trace(tid(i, "a")))
        live.append(make_trace(tid(i, "b")))
    write_traces(store, [make_trace(tid(0, "a"))])  # a thread writer had stored one before the crash
    crashed.close(remove=False)  # as kill -9 leaves it
    ingester = Ingester(store, root, batch_size=16)
    drain(ingester)
    assert count_traces(store) == 60
    assert not crashed.dir.exists()
    # The live journal: read to its end, the segments before the cursor deleted, the one being written kept.
    assert read_cursor(live.dir) == (*live.position, 30)
    assert [p.name for p in live.dir.glob("*.log")] == [live.position[0]]
    for i in range(30, 35):  # what the worker appends later is picked up where the cursor stands
        live.append(make_trace(tid(i, "b")))
    drain(ingester)
    assert count_traces(store) == 65
    live.close(remove=True)
    drain(ingester)
    assert ingester.sources == {}
    store.close()


def test_a_crash_between_commit_and_cursor_stores_nothing_twice(db_url: str, tmp_path: Path) -> None:
    store = Store(db_url)
    root = tmp_path / "journal"
    journal = live_journal(root, 20)
    drain(Ingester(store, root))
    (journal.dir / CURSOR).unlink()  # the ingester was killed after its commit, before its cursor
    for i in range(20, 25):
        journal.append(make_trace(tid(i)))
    drain(Ingester(store, root))
    assert count_traces(store) == 25
    journal.close(remove=True)
    store.close()


def test_a_live_thread_mode_journal_is_left_to_its_own_writer(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    root = tmp_path / "journal"
    cli = Journal(root)  # `llmdock chat` beside a server: its writer thread stores these
    for i in range(3):
        cli.append(make_trace(tid(i)))
    ingester = Ingester(store, root)
    drain(ingester)
    assert count_traces(store) == 0
    write_traces(store, [make_trace(tid(0))])  # its thread stored one, then it was killed
    cli.close(remove=False)
    drain(ingester)  # now an orphan: adopted, each trace checked against the store
    assert count_traces(store) == 3
    assert not cli.dir.exists()
    store.close()


def test_a_torn_tail_is_skipped_and_the_rest_stored(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    root = tmp_path / "journal"
    crashed = Journal(root)
    for i in range(3):
        crashed.append(make_trace(tid(i)))
    crashed.close(remove=False)
    with next(crashed.dir.glob("*.log")).open("ab") as f:
        f.write(b'deadbeef {"id": "torn by a kill -9 in the middle of a wri')  # never acknowledged
    drain(Ingester(store, root))
    assert count_traces(store) == 3
    assert not crashed.dir.exists()
    store.close()


def test_while_the_store_is_away_the_journal_keeps_everything(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    crashed = Journal(root)
    for i in range(5):
        crashed.append(make_trace(tid(i)))
    crashed.close(remove=False)
    away = Store(UNREACHABLE, migrate=False)
    first = Ingester(away, root)
    with pytest.raises(Exception, match="connect|refused|Connection"):
        first.run_once()
    first.close()
    away.close()
    assert len(list(crashed.dir.glob("*.log"))) == 1
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    drain(Ingester(store, root))
    assert count_traces(store) == 5
    store.close()


@pytest.mark.server
def test_the_writer_keeps_an_ingester_running_through_kill_9(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    root = tmp_path / "journal"
    writer = IngestedWriter(store, Journal(root), flush_interval_s=0.05, check_interval_s=0.2)
    try:
        writer.adopt_orphans()  # returns once the ingester it started has reported
        assert writer.status()["ok"]
        for i in range(50):
            writer.submit(make_trace(tid(i)))
        assert writer.flush(timeout=60)
        assert count_traces(store) == 50
        assert writer.status()["pending"] == 0
        first = read_status(root)["pid"]
        os.kill(first, signal.SIGKILL)
        for i in range(50, 80):  # journaled while no ingester runs
            writer.submit(make_trace(tid(i)))
        wait_until(lambda: read_status(root).get("pid") not in (None, first), 90, "a new ingester")
        assert writer.flush(timeout=60)
        assert count_traces(store) == 80
        assert writer.status()["ok"]
    finally:
        writer.close()
        store.close()
    assert not writer.journal.dir.exists()  # all stored: a clean close removes it
    # No live journal left: the ingester exits by itself.
    wait_until(lambda: not (root / "ingest.json").exists(), 90, "the idle ingester to exit")


def test_the_status_file_never_holds_the_store_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'secret-name.sqlite'}"
    store = Store(url)
    root = tmp_path / "journal"
    journal = Journal(root)
    ingester = Ingester(store, root)
    ingester.run_once()
    ingester._report(force=True)
    assert "secret-name" not in (root / "ingest.json").read_text()
    assert json.loads((root / "ingest.json").read_text())["ok"] is True
    journal.close(remove=True)
    store.close()


def _nice(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_the_ingester_lowers_its_priority_once_it_has_caught_up(tmp_path: Path) -> None:
    """Its batches held the core a woken worker needed (bench/tail_c1.py): caught up, it runs at nice 19."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url)
    root = tmp_path / "journal"
    live = live_journal(root, 20)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdock.store.ingest", str(root), "256", "0.05"],
        env={**os.environ, URL_ENV: url},
    )
    try:
        wait_until(lambda: count_traces(store) == 20, 60, "the ingester to store the journal")
        wait_until(lambda: _nice(proc.pid) == LOW_NICE, 10, f"the ingester at nice {LOW_NICE}")
    finally:
        proc.kill()
        proc.wait()
        live.close(remove=True)
        store.close()


def test_behind_at_low_priority_it_hands_over_and_keeps_its_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Low priority cannot be undone: saturated cores starve it, so it exits and a worker starts a new one
    at the workers' priority (its status stays fresh meanwhile: /ready does not flap)."""
    lowered: list[bool] = []
    monkeypatch.setattr(ingest_module, "lower_priority", lambda: lowered.append(True) or True)
    monkeypatch.setattr(ingest_module, "BEHIND_S", 0.0)
    (tmp_path / "journal").mkdir()
    ingester = Ingester(Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), tmp_path / "journal", batch_size=8)
    rounds = iter([0, 3, 8, 8])  # caught up (lowered), caught up, then full batches: behind
    monkeypatch.setattr(ingester, "run_once", lambda: next(rounds))
    monkeypatch.setattr(ingest_module.time, "sleep", lambda _s: None)
    ingester.run()
    assert lowered == [True]  # once
    assert ingester.handed_over
    assert read_status(tmp_path / "journal")["ok"]
    ingester.store.close()


def test_batches_of_any_size_use_a_few_insert_statements(tmp_path: Path) -> None:
    """Each distinct row count of a multi-row INSERT is a statement sqlite3 keeps prepared (128 of them per
    connection): batches of every size grew the ingester's memory by ~60 MiB (bench/ingest_memory.py)."""
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    statements: set[str] = set()

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO traces"):
            statements.add(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    n = 0
    for size in range(1, 257):
        write_traces(store, [make_trace(tid(n + i)) for i in range(size)])
        n += size
    assert count_traces(store) == n
    assert len(statements) <= 9  # 1, 2, 4, ..., 256 rows
    store.close()
