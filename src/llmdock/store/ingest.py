"""The trace ingester: one process per journal root that stores what the gateway's workers journal.

Under ``llmdock serve`` (``trace.ingest: auto``) a worker only appends each finished trace to its journal
(store/journal.py) before answering; this process tails every worker's journal, stores the traces in
batches and deletes the segments it has stored. A worker's event loop then shares its GIL with no database
writer: that sharing made the gateway's P99 at c=1 (a batch's insert holding the GIL while a request
waited) and cost a worker about a third of its CPU at c=32 (bench/workers.py, bench/defaults_cost.py). One
ingester per root (an ``flock`` on ``ingest.lock``) is also one writer for all workers, so they do not
contend for SQLite's write lock.

Exactly once: per journal directory the ingester keeps how far it has stored (``cursor``: a segment and an
offset, replaced atomically after each commit), and checks each batch's ids against the store before
writing it (a crash between the commit and the cursor re-reads at most that batch).

It runs in the server's process group, so a stop signal reaches it with the workers: it then keeps storing
until the workers have closed their journals (each waits for its last traces to be stored), for 10 s at
most; it also exits once no worker's journal is alive and everything is stored. Workers start it when no
process holds the lock (at start-up and every few seconds after), so a ``kill -9`` of any process, this one
included, loses nothing: the journals hold whatever is not stored yet.

Priority: once it has caught up, it lowers its own (nice 19). Storing a batch takes it tens of milliseconds of
CPU every ``flush_interval_s``; at the workers' priority, a worker woken by a request on the core it held
waited for its time slice, which made most of the gateway's P99 at c=1 (bench/tail_c1.py: the event loop's
waits for a core, by who held it). A process cannot raise its priority again, so if it then falls behind
for ``BEHIND_S`` (the cores are saturated and it gets almost none of them) it exits, its status kept fresh,
and the workers start a new one at their own priority, which catches up and lowers itself again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmdock.errors import StoreUnavailable
from llmdock.store.engine import Store, _short
from llmdock.store.journal import decode_line, lock_if_dead
from llmdock.store.trace_records import TraceRecord
from llmdock.store.trace_writer import store_batch

log = logging.getLogger("llmdock.ingest")
INGEST_LOCK = "ingest.lock"
STATUS = "ingest.json"
CURSOR = "cursor"
MARKER = "ingested"  # in a journal directory whose traces only the ingester stores (trace.ingest: process)
URL_ENV = "LLMDOCK_INGEST_DATABASE_URL"  # the store's URL reaches the process in its environment, not argv
READ_BYTES = 1 << 20
IDLE_EXIT_S = 2.0  # no live journal and nothing left to store for this long: exit
STOP_GRACE_S = 10.0  # after SIGTERM, how long it keeps storing while workers close their journals
LOW_NICE = 19  # the ingester's niceness once it has caught up
BEHIND_S = 5.0  # reading full batches this long at low priority: hand over to one at the workers' priority


def url_tag(url: str) -> str:
    """Which store an ingester writes to, without the URL (it may hold a password) in a readable file."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def read_cursor(directory: Path) -> tuple[str, int, int]:
    """How far the ingester has stored a journal directory: (segment name, offset, traces read up to there);
    ("", 0, 0) if it has not begun."""
    try:
        data = json.loads((directory / CURSOR).read_text())
        return str(data["segment"]), int(data["offset"]), int(data.get("count", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return "", 0, 0


def read_status(root: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((root / STATUS).read_text())
        return data
    except (OSError, ValueError):
        return {}


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class _Source:
    """One worker's journal directory, and how far it is stored."""

    dir: Path
    segment: str = ""
    offset: int = 0
    lock_fd: int = -1  # held once its process is gone: the directory is ours to finish and remove
    count: int = 0  # journal lines read up to the cursor (a worker's pending traces: its appends minus these)
    next: tuple[str, int, int] = ("", 0, 0)  # where the records read but not yet stored end, and the count
    finished: bool = False  # dead, and read to its end: removed once the batch in hand is stored
    skipped: set[str] = field(default_factory=set)  # segments whose corrupt tail was reported
    # Lines to check against the store before writing them: all of a crashed thread-mode journal (its
    # writer thread may have stored any of them), else one batch after the cursor (an ingester killed
    # between its commit and its cursor): the lines numbered up to ``check_until``; -1: all.
    check_until: int = 0


class Ingester:
    """Stores the traces in every journal under ``root``; :meth:`run` until told to stop or idle."""

    def __init__(self, store: Store, root: Path, *, batch_size: int = 256, flush_interval_s: float = 0.2):
        self.store = store
        self.root = root
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.sources: dict[str, _Source] = {}
        self.written = 0
        self.dropped = 0
        self.last_error = ""
        self.tag = url_tag(store.url)
        self._status_at = 0.0  # the first round reports at once
        self._draining = -1
        self.stopping = False
        self.stop_by = 0.0
        self.lowered = False  # runs at LOW_NICE (caught up once)
        self.behind_since: float | None = None  # reading full batches at low priority since then
        self.handed_over = False  # exited behind at low priority: a worker starts a new ingester

    # --- one round --------------------------------------------------------------------------------------
    def run_once(self) -> int:
        """Store what is new in the journals (one batch at most); how many traces that read."""
        self._discover()
        batch: list[TraceRecord] = []
        for src in list(self.sources.values()):
            if len(batch) >= self.batch_size:
                break
            try:
                batch += self._read(src, self.batch_size - len(batch))
            except FileNotFoundError:  # its worker closed it cleanly (everything stored) meanwhile
                self._forget(src)
        read = len(batch)
        if batch:
            written, dropped = store_batch(self.store, batch, yield_gil=False)
            self.written += written
            self.dropped += dropped
        for src in list(self.sources.values()):
            self._advance(src)
        return read

    def _discover(self) -> None:
        if not self.root.is_dir():
            return
        for gone in [src for src in self.sources.values() if not src.dir.is_dir()]:
            self._forget(gone)  # its worker stopped cleanly: everything stored, the directory removed
        for directory in self.root.iterdir():
            if directory.is_dir() and directory.name not in self.sources:
                segment, offset, count = read_cursor(directory)
                src = _Source(directory, segment, offset, count=count, check_until=count + self.batch_size)
                self.sources[directory.name] = src
        for src in self.sources.values():
            if src.lock_fd < 0:
                src.lock_fd = lock_if_dead(src.dir)
                if src.lock_fd >= 0 and not (src.dir / MARKER).exists():
                    src.check_until = -1  # a crashed CLI or thread-mode process: its writer stored some

    def _read(self, src: _Source, limit: int) -> list[TraceRecord]:
        """Up to ``limit`` traces after ``src``'s cursor; ``src.next`` is where they end."""
        dead = src.lock_fd >= 0
        if not dead and not (src.dir / MARKER).exists():
            return []  # a live process that stores its own traces (a writer thread: the CLI, evaluations)
        segments = sorted(p.name for p in src.dir.glob("*.log"))  # listed before reading: see below
        segment, offset = src.segment, src.offset
        if dead and not segments:
            src.finished = True
        if segment not in segments:
            segment, offset = (segments[0], 0) if segments else ("", 0)
        records: list[TraceRecord] = []
        lines = 0
        while segment and len(records) < limit:
            # A newer segment existed before this read: this one is complete (its worker appends to its
            # newest only), so a line without its newline is torn, not still being written.
            final = dead or segment != segments[-1]
            with (src.dir / segment).open("rb") as f:
                f.seek(offset)
                data = f.read(READ_BYTES)
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines(keepends=True):
                if len(records) >= limit:
                    break
                offset += len(line)
                lines += 1
                rec = decode_line(line)
                if rec is None:
                    log.warning("%s/%s: a corrupt journal line skipped", src.dir.name, segment)
                    continue
                rec.replayed = src.check_until < 0 or src.count + lines <= src.check_until
                records.append(rec)
            if len(records) >= limit or (end < len(data) and not final) or len(data) == READ_BYTES:
                break
            if end < len(data) and segment not in src.skipped:  # a torn tail: never acknowledged
                src.skipped.add(segment)
                log.warning(
                    "%s/%s: torn journal tail skipped (%d bytes)", src.dir.name, segment, len(data) - end
                )
            if not final:
                break
            later = segments.index(segment) + 1
            if later == len(segments):
                src.finished = True
                break
            segment, offset = segments[later], 0
        src.next = (segment, offset, src.count + lines)
        return records

    def _advance(self, src: _Source) -> None:
        """The batch is stored: move ``src``'s cursor, delete the segments before it, remove it if done."""
        if src.next[0] == "":
            if src.finished:
                self._finish(src)
            return
        if src.next != (src.segment, src.offset, src.count):
            src.segment, src.offset, src.count = src.next
            try:
                cursor = {"segment": src.segment, "offset": src.offset, "count": src.count}
                _replace(src.dir / CURSOR, json.dumps(cursor))
                for old in src.dir.glob("*.log"):
                    if old.name < src.segment:
                        old.unlink(missing_ok=True)
            except FileNotFoundError:
                self._forget(src)
                return
        if src.finished:
            self._finish(src)

    def _finish(self, src: _Source) -> None:
        shutil.rmtree(src.dir, ignore_errors=True)
        self._forget(src)

    def close(self) -> None:
        """Release the journals of gone processes this ingester holds (another may take them)."""
        for src in list(self.sources.values()):
            self._forget(src)

    def _forget(self, src: _Source) -> None:
        if src.lock_fd >= 0:
            os.close(src.lock_fd)
        self.sources.pop(src.dir.name, None)

    # --- the loop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        backoff = self.flush_interval_s
        idle_since: float | None = None
        while not (self.stopping and time.monotonic() > self.stop_by):
            try:
                read = self.run_once()
            except Exception as exc:  # the store is away: the journals keep the traces; retry
                self.last_error = exc.message if isinstance(exc, StoreUnavailable) else _short(exc)
                self._report(force=True)
                for src in self.sources.values():
                    src.finished = False
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if self.last_error:
                log.warning("trace store reachable again")
                self.last_error = ""
                self._report(force=True)
            backoff = self.flush_interval_s
            self._report()
            if self._behind(read):
                log.warning("the trace ingester fell behind at low priority: handing over to a new one")
                self.handed_over = True
                return
            live = any(src.lock_fd < 0 for src in self.sources.values())
            if read or live:
                idle_since = None
            elif self.stopping:
                return  # told to stop, and the workers have closed their journals (all stored)
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= IDLE_EXIT_S:
                return
            if read < self.batch_size:
                time.sleep(self.flush_interval_s)

    def _behind(self, read: int) -> bool:
        """Lower the priority once caught up (a round read less than a batch); True once behind for
        ``BEHIND_S`` at low priority (full batches only), when a new ingester at normal priority should go on."""
        if read < self.batch_size:
            self.behind_since = None
            if not self.lowered:
                self.lowered = lower_priority()
            return False
        if not self.lowered or self.stopping:
            return False
        now = time.monotonic()
        if self.behind_since is None:
            self.behind_since = now
        return now - self.behind_since >= BEHIND_S

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop once the workers' journals are closed (they wait for it to store their last traces on a
        clean shutdown), or after ``grace_s``: the server's stop signal reaches its whole process group."""
        self.stopping = True
        self.stop_by = time.monotonic() + grace_s

    def _report(self, *, force: bool = False) -> None:
        now = time.time()
        draining = sum(src.lock_fd >= 0 for src in self.sources.values())  # journals of dead processes
        if not force and now - self._status_at < 1.0 and draining == self._draining:
            return
        self._draining = draining
        self._status_at = now
        state = {
            "pid": os.getpid(),
            "store": self.tag,
            "ok": not self.last_error,
            "last_error": self.last_error,
            "written": self.written,
            "dropped": self.dropped,
            "draining": draining,
            "updated": now,
        }
        try:
            _replace(self.root / STATUS, json.dumps(state))
        except OSError as exc:
            log.warning("cannot write %s: %s", self.root / STATUS, exc)


def lower_priority() -> bool:
    """This process at ``LOW_NICE`` (it cannot go back): True if it is there now."""
    try:
        os.nice(LOW_NICE - os.nice(0))
    except OSError as exc:  # not permitted here (a sandbox): the ingester runs as it is
        log.warning("cannot lower the trace ingester's priority: %s", exc)
        return False
    return True


def take_lock(root: Path, wait_s: float) -> int:
    """``root``'s ingester lock, waiting up to ``wait_s`` for a previous holder to exit; -1 if still held."""
    fd = os.open(root / INGEST_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return -1
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    """``python -m llmdock.store.ingest JOURNAL_ROOT [BATCH_SIZE FLUSH_INTERVAL_S]`` (the URL in the env)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = Path(argv[0])
    batch_size = int(argv[1]) if len(argv) > 1 else 256
    interval = float(argv[2]) if len(argv) > 2 else 0.2
    lock = take_lock(root, wait_s=10)
    if lock < 0:
        return 0  # another ingester has this root
    ingester = Ingester(
        Store(os.environ[URL_ENV], migrate=False), root, batch_size=batch_size, flush_interval_s=interval
    )

    def stop(*_: Any) -> None:
        ingester.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # Ctrl-C in the server's terminal reaches its whole process group
    try:
        ingester.run()
    finally:
        ingester.close()
        ingester.store.close()
        if not ingester.handed_over:  # else its fresh status covers the seconds until the next one reports
            (root / STATUS).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
