"""Runs ``llmdock serve`` with probes that say where each request's time went (used by tail_c1.py).

``python bench/tail_probe.py OUT.json serve --config ...`` starts the server as ``llmdock serve ...`` would,
with two probes, and writes what they saw to OUT.json when the server exits:

- every request (the ASGI call, from the app's first line to its last): its start, wall time, the event
  loop thread's CPU time, the whole process's CPU time (other threads too), and the loop thread's voluntary
  and involuntary context switches (``getrusage(RUSAGE_THREAD)``: an involuntary one means the kernel gave
  the core to another process mid-request);
- every cyclic garbage collection (``gc.callbacks``): its start, generation and duration.

A request slower than its CPU time waited: for another process on its core (involuntary switches), for the
GIL (process CPU above thread CPU), or for the upstream. A request whose CPU time is long ran something long:
a collection (its duration is in the GC list), or work of its own.
"""

from __future__ import annotations

import atexit
import gc
import json
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Asgi = Callable[[Scope, Any, Any], Awaitable[None]]

requests: list[tuple[float, float, float, float, int, int]] = []
collections: list[tuple[float, int, float]] = []
_gc_started = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        collections.append((_gc_started[0], int(info["generation"]), time.perf_counter() - _gc_started[0]))


def probed(app: Asgi) -> Asgi:
    """``app`` with each HTTP request's wall time, CPU times and context switches recorded."""

    async def wrapper(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        r0 = resource.getrusage(resource.RUSAGE_THREAD)
        t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        try:
            await app(scope, receive, send)
        finally:
            t1, c1, p1 = time.perf_counter(), time.thread_time(), time.process_time()
            r1 = resource.getrusage(resource.RUSAGE_THREAD)
            requests.append(
                (t0, t1 - t0, c1 - c0, p1 - p0, r1.ru_nivcsw - r0.ru_nivcsw, r1.ru_nvcsw - r0.ru_nvcsw)
            )

    return wrapper


def _dump(path: str) -> None:
    with open(path, "w") as f:
        json.dump({"requests": requests, "collections": collections, "thresholds": gc.get_threshold()}, f)


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    import llmdock.gateway
    from llmdock.cli.main import main as cli

    create = llmdock.gateway.create_app
    llmdock.gateway.create_app = lambda *a, **k: probed(create(*a, **k))  # type: ignore[assignment]
    gc.callbacks.append(_on_gc)
    atexit.register(_dump, out)
    # uvicorn re-raises the stop signal once it has shut down, under the handler it found: exit, not die
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.argv = ["llmdock", *argv]
    cli()


if __name__ == "__main__":
    main()
