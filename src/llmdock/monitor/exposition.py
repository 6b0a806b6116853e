"""``GET /metrics``'s body, and the per-run directory of prometheus-client's multiprocess mode.

With several workers (``llmdock serve --workers N``) each process writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client reads the variable when it is first imported, so ``serve``
sets it before anything imports it); whichever worker answers a scrape reads every worker's files. Counters of
a worker that died stay counted; its live gauges (in-flight, breaker, backlog) are dropped at the next scrape.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from llmdock.monitor.metrics import RequestMetrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def prepare_run_dir(home: Path) -> Path:
    """An empty directory for this server's metric files, ``<home>/prometheus/<pid>``; the directories of
    servers that are no longer running are removed."""
    root = home / "prometheus"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.is_dir() and old.name.isdigit() and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    run = root / str(os.getpid())
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    return run


def clear_dir(path: Path) -> None:
    """Remove the metric files a previous run left in a directory the operator chose."""
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)


def render(metrics: RequestMetrics) -> tuple[bytes, str]:
    """The exposition text (and its content type): every worker's values when in multiprocess mode, else this
    process's registry. Thread-safe (prometheus-client locks its values); flush the worker's tallies first, on
    the loop that records them."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
    _forget_dead_workers(path)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _forget_dead_workers(path: str) -> None:
    for name in os.listdir(path):
        m = _LIVE_FILE.fullmatch(name)
        if m and not _alive(int(m.group(1))):
            mark_process_dead(int(m.group(1)), path)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped) is gone for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().split("\n", 3)[2].lower()
    return True
