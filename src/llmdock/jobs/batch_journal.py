"""The progress journal of a batch: what makes a batch resumable after a kill, and its output exact.

Each finished row is appended to the journal as one ``write`` of one whole line (``index<TAB>ok<TAB>json``),
so once a row is recorded a ``kill -9`` of the process cannot lose it (the kernel has the bytes); the file is
``fsync``-ed at most every second and when the batch ends, so a power cut loses at most that second's rows,
which are then answered again, never twice. A torn last line (a power cut mid-write) is cut off on open.

The output file is written only when every row is in the journal: in input order, through a temporary file,
``fsync`` and an atomic rename, taking the first record of each row (two writers of one journal, e.g. a
gateway worker whose lease was taken over, cannot duplicate a row). So the output is never truncated, never
holds a row twice, and does not exist until it is complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from llmdock.errors import Conflict
from llmdock.registry.artifacts import fsync_dir

MAGIC = b"#llmdock-batch-journal "
FSYNC_EVERY_S = 1.0


class ProgressJournal:
    """The finished rows of one batch (``done``), recorded as they finish, assembled in order at the end.

    ``fingerprint`` names what the rows were made from (the input's hash and the options): a journal of
    another input is refused rather than mixed in.
    """

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.done: set[int] = set()
        self.failed: set[int] = set()
        self._fd = -1
        self._synced = time.monotonic()

    def open(self) -> set[int]:
        """Open (or create) the journal; return the indices of the rows already done."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = MAGIC + self.fingerprint.encode() + b"\n"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        size = os.fstat(self._fd).st_size
        if size == 0:
            os.write(self._fd, header)
            os.fsync(self._fd)
            return self.done
        with self.path.open("rb") as fh:
            first = fh.readline()
            if first != header:
                os.close(self._fd)
                self._fd = -1
                raise Conflict(
                    f"{self.path} is the progress of another input or other options: "
                    "delete it to start over, or write the output elsewhere",
                    where=str(self.path),
                )
            kept = len(first)
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # torn by a crash mid-write: cut off below
                kept += len(raw)
                index, ok, _ = raw.split(b"\t", 2)
                self.done.add(int(index))
                if ok != b"1":
                    self.failed.add(int(index))
        if kept < size:
            os.ftruncate(self._fd, kept)
        return self.done

    def record(self, index: int, ok: bool, line: bytes) -> None:
        """Append one finished row (``line`` is its output, one JSON document without a newline)."""
        os.write(self._fd, b"%d\t%d\t%s\n" % (index, ok, line))
        self.done.add(index)
        if not ok:
            self.failed.add(index)
        now = time.monotonic()
        if now - self._synced >= FSYNC_EVERY_S:
            os.fsync(self._fd)
            self._synced = now

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _records(self) -> Iterator[tuple[int, bool, bytes]]:
        with self.path.open("rb") as fh:
            fh.readline()
            for raw in fh:
                if raw.endswith(b"\n"):
                    index, ok, line = raw.split(b"\t", 2)
                    yield int(index), ok == b"1", line

    def assemble(
        self, total: int, out: Path, errors: Path | None = None, *, partial: bool = False
    ) -> tuple[int, int]:
        """Write rows 0..total-1 in order to ``out`` (failed rows to ``errors`` when given), atomically.

        Returns (rows answered, rows with an error). Every row must be done, unless ``partial`` (a
        cancelled batch: the rows done)."""
        first: dict[int, tuple[bool, bytes]] = {}
        for index, ok, line in self._records():
            first.setdefault(index, (ok, line))
        missing = [i for i in range(total) if i not in first]
        if missing and not partial:
            raise Conflict(f"{len(missing)} rows are not done yet (first: row {missing[0] + 1})")
        targets = [out] if errors is None else [out, errors]
        tmps = {p: p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in targets}
        failed = 0
        handles = {p: tmps[p].open("wb") for p in targets}
        try:
            for i in range(total):
                if i not in first:
                    continue
                ok, line = first[i]
                target = out if ok or errors is None else errors
                handles[target].write(line)
                failed += not ok
        finally:
            for fh in handles.values():
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
        for p in targets:
            os.replace(tmps[p], p)
        fsync_dir(out.parent)
        return len(first) - failed, failed

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
