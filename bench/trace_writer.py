"""Trace writer: CPU per trace, and how late the event loop runs while traces are written beside it.

The gateway writes traces from a background thread, which shares the GIL with the event loop: while the
writer holds it, a request that just arrived waits. This measures that on its own, without HTTP: an
event loop whose only work is a timer every 2 ms records how late each timer fires, while traces like
the gateway's (4 spans) are submitted at ``--rate`` per second to a TraceWriter on a temporary SQLite
store. The same loop without a writer is the baseline (what the machine itself adds). Also printed:
``write_traces`` CPU time per trace (thread time, so other load on the machine matters less).

Usage: .venv/bin/python bench/trace_writer.py [--seconds 8] [--rate 2000] [--rounds 2]
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from harness import options
from rich.console import Console
from rich.table import Table

from llmdock.store import SpanRecord, Store, TraceRecord, TraceWriter, write_traces

TICK_S = 0.002
IDS = itertools.count()  # trace ids unique over every round


def gateway_like_trace() -> TraceRecord:
    now = datetime.now(UTC)
    spans = [
        SpanRecord(name, now, 0.01, "ok", {"gen_ai.usage.input_tokens": 2, "llmdock.context_window": 0})
        for name in ("preprocess", "cache", "generate", "postprocess")
    ]
    return TraceRecord(
        id=f"{next(IDS):032x}",
        created_at=now,
        operation="chat",
        model="fake",
        status="ok",
        duration_ms=0.5,
        backend="openai_compat",
        prompt_tokens=5,
        completion_tokens=4,
        finish_reason="stop",
        input={"messages": [{"role": "user", "content": "hello"}]},
        output="hello from upstream",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "fake",
            "gen_ai.provider.name": "openai_compat",
            "llmdock.source": "gateway",
            "llmdock.cache": "skip",
            "llmdock.deployment": "fake",
            "llmdock.attempts": 1,
            "gen_ai.request.max_tokens": 8,
        },
        deployment="fake",
        cache="skip",
        spans=spans,
    )


async def timer_lateness(writer: TraceWriter | None, seconds: float, rate: int) -> list[float]:
    """Lateness (ms) of a 2 ms timer while ``rate`` traces/s go to ``writer`` (None: no writer)."""
    lateness: list[float] = []

    async def tick() -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lateness.append((time.perf_counter() - t0 - TICK_S) * 1000)

    ticker = asyncio.create_task(tick())
    per_step = max(1, rate // 50)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if writer is not None:
            for _ in range(per_step):
                writer.submit(gateway_like_trace())
        await asyncio.sleep(0.02)
    ticker.cancel()
    return sorted(lateness)


def write_cpu_us(store: Store, traces: int = 2048) -> float:
    batches = [[gateway_like_trace() for _ in range(256)] for _ in range(traces // 256)]
    t0 = time.thread_time()
    for batch in batches:
        write_traces(store, batch)
    return (time.thread_time() - t0) / traces * 1e6


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=int, default=2000, help="traces per second (about the gateway at c=1)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating")
    args = parser.parse_args()
    table = Table(
        "measurement", "timer lateness P50 / P90 / P99 / max ms", title="trace writer beside the loop"
    )
    home = Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    for r in range(args.rounds):
        for label in ("no writer (baseline)", f"TraceWriter, {args.rate:,} traces/s"):
            writer = (
                None if label.startswith("no") else TraceWriter(store, batch_size=256, flush_interval_s=0.2)
            )
            late = asyncio.run(timer_lateness(writer, args.seconds, args.rate))
            if writer is not None:
                writer.close()
            q = [late[int(p * (len(late) - 1))] for p in (0.9, 0.99)]
            table.add_row(
                f"{label} (round {r + 1})",
                f"{statistics.median(late):.2f} / {q[0]:.2f} / {q[1]:.2f} / {late[-1]:.1f}",
            )
    table.add_row("write_traces CPU per trace (SQLite, batches of 256)", f"{write_cpu_us(store):.1f} us")
    store.close()
    Console().print(table)


if __name__ == "__main__":
    main()
