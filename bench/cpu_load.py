"""CPU and memory of process trees, from /proc: how much of the machine other processes took while a
figure was measured, and what a server and its children hold resident."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_ticks(pid: int) -> int:
    """User + system CPU of one process, all its threads, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_snapshot() -> tuple[int, int, int]:
    """(busy ticks of the machine, all ticks of the machine, ticks of this process tree)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values)
    own = 0
    for pid in tree_pids(os.getpid()):
        with contextlib.suppress(OSError):
            own += process_ticks(pid)
    return total - values[3] - values[4], total, own  # values[3:5] = idle, iowait


class OtherLoad:
    """Measures, from its creation on, the share of all CPUs used by processes outside this tree."""

    def __init__(self) -> None:
        self.start = cpu_snapshot()

    def share(self) -> float:
        (busy0, total0, own0), (busy1, total1, own1) = self.start, cpu_snapshot()
        return max(0, (busy1 - busy0) - (own1 - own0)) / max(1, total1 - total0)


class SummedLoad:
    """Other processes' share of all CPUs over several separate blocks (summed ticks, not averaged shares)."""

    def __init__(self) -> None:
        self.other = self.total = 0

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        busy0, total0, own0 = cpu_snapshot()
        try:
            yield
        finally:
            busy1, total1, own1 = cpu_snapshot()
            self.other += max(0, (busy1 - busy0) - (own1 - own0))
            self.total += total1 - total0

    def share(self) -> float:
        return self.other / max(1, self.total)


def process_tree_rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and all its descendants, in MiB."""
    total_kib = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024
