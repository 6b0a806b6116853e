"""The trace journal: a write-ahead file of finished traces, so that a crash loses none that was answered.

A trace is appended to the journal on the event loop, before its response is sent (``os.write``: the kernel
has it, so a ``kill -9`` of the gateway cannot lose it; with ``sync: fsync`` the response also waits for a
group ``fsync`` shared with the requests that finished meanwhile, which survives a power cut of the host).
The trace writer stores traces in batches as before; a journal segment is deleted once every trace in it is
in the store. On start-up a gateway adopts the journals of processes that are gone (each process holds an
``flock`` on its own directory, so workers of one server never take each other's) and stores what they
hold; the store's primary key makes that exactly once.

Each line is ``<crc32 hex> <json>``: a line torn by the crash (never acknowledged) fails its checksum and is
skipped, with the rest of that segment's tail.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import shutil
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from llmdock.errors import StoreUnavailable
from llmdock.store.trace_records import SpanRecord, TraceRecord

log = logging.getLogger("llmdock.traces")
SEGMENT_BYTES = 4 << 20  # a new segment after this many bytes: what a restart may store twice, at most
LOCK = "lock"


@dataclass(slots=True)
class _Segment:
    path: Path
    last_seq: int = 0  # the highest sequence number written to it
    size: int = 0


class Journal:
    """This process's journal: segments of traces under ``<root>/<pid>-<token>/``, locked while it lives."""

    def __init__(
        self,
        root: Path,
        *,
        sync: Literal["write", "fsync"] = "write",
        max_bytes: int = 512 << 20,
        when_full: Literal["reject", "drop"] = "reject",
    ) -> None:
        self.root = root
        self.sync = sync
        self.max_bytes = max_bytes
        self.when_full = when_full
        root.mkdir(parents=True, exist_ok=True)
        self.dir = root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.dir.mkdir()
        self._lock_fd = os.open(self.dir / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._segments: list[_Segment] = []
        self._fd = -1
        self._seq = 0
        self._bytes = 0  # in segments not yet deleted
        self._stored_seq = 0  # every trace up to this sequence number is in the store (or given up)
        self.lost = 0  # traces not journaled because the journal was full (when_full: drop)
        self._guard = threading.Lock()  # segments are deleted from the writer thread
        self._syncer = _GroupSync() if sync == "fsync" else None
        self._open_segment()

    # --- the event loop's side -------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Bytes in segments not yet deleted."""
        return self._bytes

    @property
    def full(self) -> bool:
        """Whether the journal reached ``max_bytes`` (the store has been away long enough)."""
        return self._bytes >= self.max_bytes

    @property
    def refusing(self) -> bool:
        """Whether new requests should be refused: the journal is full and its policy says reject."""
        return self.when_full == "reject" and self.full

    def append(self, rec: TraceRecord) -> int:
        """Write ``rec`` to the journal; its sequence number (0 if it was not written: the journal is full)."""
        if self.full:
            if self.when_full == "reject":  # the gateway refuses new requests first; this one was served
                log.error("trace journal full (%d bytes): trace %s kept in memory only", self._bytes, rec.id)
            self.lost += 1
            return 0
        line = orjson.dumps(rec, default=str)
        data = b"%08x %b\n" % (zlib.crc32(line), line)
        with self._guard:
            self._seq += 1
            segment = self._segments[-1]
            os.write(self._fd, data)
            segment.last_seq = self._seq
            segment.size += len(data)
            self._bytes += len(data)
            if segment.size >= SEGMENT_BYTES:
                self._open_segment()
            return self._seq

    def synced(self) -> asyncio.Future[None] | None:
        """With ``sync: fsync``, a future done once what was appended so far is on disk; else None."""
        if self._syncer is None:
            return None
        return self._syncer.request(self._fd)

    # --- the writer thread's side ----------------------------------------------------------------------
    def stored(self, seq: int) -> None:
        """Every trace up to ``seq`` is in the store: delete the segments that hold only such traces."""
        if seq <= self._stored_seq:
            return
        with self._guard:
            self._stored_seq = seq
            while len(self._segments) > 1 and self._segments[0].last_seq <= seq:
                done = self._segments.pop(0)
                done.path.unlink(missing_ok=True)
                self._bytes -= done.size

    def refresh_size(self) -> None:
        """Forget the segments someone else deleted (the ingester process, which stores them): the size and
        ``full`` then count only what is still on disk."""
        with self._guard:
            kept = [seg for seg in self._segments[:-1] if seg.path.exists()]
            gone = len(self._segments) - 1 - len(kept)
            if gone:
                self._segments[:-1] = kept
                self._bytes = sum(seg.size for seg in self._segments)

    @property
    def appended(self) -> int:
        """How many traces this journal has been given (its last sequence number)."""
        return self._seq

    @property
    def position(self) -> tuple[str, int]:
        """Where the journal ends: its newest segment's name and size (what an ingester must have read)."""
        with self._guard:
            return self._segments[-1].path.name, self._segments[-1].size

    def close(self, *, remove: bool) -> None:
        """Stop journaling; ``remove`` when everything is stored (a clean shutdown)."""
        if self._syncer is not None:
            self._syncer.close()
        with self._guard:
            if self._fd < 0:  # closed already
                return
            os.close(self._fd)
            os.close(self._lock_fd)
            self._fd = self._lock_fd = -1
            if remove:
                shutil.rmtree(self.dir, ignore_errors=True)

    def _open_segment(self) -> None:
        path = self.dir / f"{self._seq + 1:012d}.log"  # named by its first sequence number: they sort
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        if self._fd >= 0:
            if self._syncer is not None:
                os.fsync(
                    self._fd
                )  # its last lines may be waiting for the group sync, which syncs the new one
            os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(path))


def lock_if_dead(directory: Path) -> int:
    """The lock of a journal directory whose process is gone (now held by the caller), or -1 if it lives."""
    try:
        fd = os.open(directory / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # its process is alive (another worker)
        os.close(fd)
        return -1
    return fd


def orphans(root: Path) -> Iterator[Path]:
    """Journal directories whose process is gone, each locked for the caller (unlocked when it is removed)."""
    if not root.is_dir():
        return
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        if (fd := lock_if_dead(directory)) < 0:
            continue
        try:
            yield directory
        finally:
            os.close(fd)


def read_journal(directory: Path) -> Iterator[TraceRecord]:
    """The traces in a journal directory, oldest first; a torn or corrupt line ends its segment."""
    for segment in sorted(directory.glob("*.log")):
        with segment.open("rb") as f:
            for number, line in enumerate(f, 1):
                rec = decode_line(line)
                if rec is None:
                    log.warning(
                        "%s:%d: torn or corrupt journal line; the rest of it is skipped", segment, number
                    )
                    break
                yield rec


def decode_line(line: bytes) -> TraceRecord | None:
    head, _, body = line.rstrip(b"\n").partition(b" ")
    try:
        if int(head, 16) != zlib.crc32(body):
            return None
        data: dict[str, Any] = orjson.loads(body)
    except ValueError:
        return None
    data["created_at"] = datetime.fromisoformat(data["created_at"])
    data["seq"], data["replayed"] = 0, True
    iso = datetime.fromisoformat
    data["spans"] = [
        SpanRecord(s["name"], iso(s["started_at"]), s["duration_ms"], s["status"], s["attributes"])
        for s in data["spans"]
    ]
    return TraceRecord(**data)


class _GroupSync:
    """fsync in groups: one thread syncs the journal for every request that finished since its last sync."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._fd = -1
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="llmdock-journal-sync", daemon=True)
        self._thread.start()

    def request(self, fd: int) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            self._fd = fd
            self._waiting.append((loop, future))
            self._cond.notify()
        return future

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stop:
                    self._cond.wait()
                if self._stop and not self._waiting:
                    return
                waiting, self._waiting = self._waiting, []
                fd = self._fd
            error: BaseException | None = None
            try:
                os.fsync(fd)
            except OSError as exc:  # a full or failing disk: the request fails rather than claim durability
                error = StoreUnavailable(f"cannot sync the trace journal: {exc}")
            for loop, future in waiting:
                loop.call_soon_threadsafe(_settle, future, error)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
