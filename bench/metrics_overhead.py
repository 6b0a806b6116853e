"""What GET /metrics costs the request path: metrics on vs off, on a constant upstream, and the recorder alone.

1. Over HTTP: two ``llmdock serve`` processes, one model ``fake`` -> ``openai_compat`` -> a constant nginx
   upstream (bench/gateway_instructions.py's), traces on (the defaults), one with ``metrics.enabled: true``
   (the default) and one with ``false``. wrk at one connection drives each in alternating rounds (load from
   elsewhere on the machine falls on both); the table shows the medians of the rounds and their difference.
   On a shared machine that difference is within the noise of a few hundredths of a millisecond.
2. In process, a figure other load moves far less: the time the request path spends in the metrics observer
   (``RequestMetrics.record`` on a real trace record of the same request, five stage spans), P50/P99 over
   many calls, and what one background flush of those tallies costs (off the request path).

Usage: .venv/bin/python bench/metrics_overhead.py [--duration 5] [--rounds 4]
Target (issue 21): <= 0.03 ms P50 added.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gateway_instructions import UPSTREAM
from harness import Spawned, free_port, llmdock_server, options, percentiles, wrk
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

BODY = '{"model":"fake","messages":[{"role":"user","content":"hello"}],"max_tokens":8}'
TARGET_MS = 0.03


def config(upstream_port: int, metrics: bool) -> str:
    return (
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nlog_level: warning\n"
        f"models:\n  fake: {{backend: openai_compat, base_url: 'http://127.0.0.1:{upstream_port}/v1', "
        f"upstream_model: fake}}\nmetrics: {{enabled: {str(metrics).lower()}}}\n"
    )


async def recorder_cost(upstream_port: int, calls: int) -> tuple[float, float, float]:
    """(P50 µs, P99 µs) of one ``record`` call on a real request's trace record, and µs per flush of them."""
    from llmdock.config import load_settings
    from llmdock.gateway import create_app
    from llmdock.runtime import Runtime
    from llmdock.store.trace_records import TraceRecord

    home = Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    (home / "llmdock.yaml").write_text(config(upstream_port, True))
    runtime = Runtime(load_settings(home / "llmdock.yaml", home=home))
    app = create_app(runtime)
    seen: list[TraceRecord] = []
    runtime.sink.observers.append(seen.append)
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        resp = await client.post(
            "/v1/chat/completions", content=BODY, headers={"content-type": "application/json"}
        )
        resp.raise_for_status()
    metrics = runtime.enable_metrics()
    rec = seen[-1]
    times = []
    flushes = []
    for i in range(calls):
        t0 = time.perf_counter_ns()
        metrics.record(rec)
        times.append((time.perf_counter_ns() - t0) / 1000)
        if i % 1000 == 999:  # as the background task does, now and then
            t0 = time.perf_counter_ns()
            metrics.flush()
            flushes.append((time.perf_counter_ns() - t0) / 1000)
    await runtime.close()
    shutil.rmtree(home, ignore_errors=True)
    p50, p99 = percentiles(times)
    return p50, p99, statistics.median(flushes)


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per server")
    parser.add_argument("--calls", type=int, default=100_000, help="in-process record() calls")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install nginx wrk")
    work = Path(tempfile.mkdtemp(prefix="llmdock-metrics-bench-"))
    upstream_port = free_port()
    (work / "nginx.conf").write_text(UPSTREAM.format(dir=work, port=upstream_port))
    nginx = Spawned(["nginx", "-p", str(work), "-c", str(work / "nginx.conf")], name="nginx")
    runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    try:
        time.sleep(0.5)
        nginx.check_alive()
        with (
            llmdock_server(config=config(upstream_port, False)) as (url_off, _),
            llmdock_server(config=config(upstream_port, True)) as (url_on, _),
            Progress() as progress,
        ):
            task = progress.add_task("wrk, metrics off / on", total=2 * args.rounds + 2)
            for url in (url_off, url_on):  # warm up both
                wrk(url + "/v1/chat/completions", 1, BODY)
                progress.advance(task)
            for i in range(args.rounds):  # off first in even rounds, on first in odd ones
                for on, url in ((False, url_off), (True, url_on))[:: 1 if i % 2 == 0 else -1]:
                    runs[on].append(wrk(url + "/v1/chat/completions", args.duration, BODY))
                    progress.advance(task)
        micro50, micro99, flush_us = asyncio.run(recorder_cost(upstream_port, args.calls))
    finally:
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {on: [statistics.median(r[i] for r in runs[on]) for i in range(3)] for on in runs}
    table = Table(
        "measurement", "P50 / P99 ms", "requests/s", "target", title="llmdock GET /metrics overhead"
    )
    for on in (False, True):
        rps, p50, p99 = med[on]
        table.add_row(
            f"metrics {'on' if on else 'off'} (constant upstream, c=1)",
            f"{p50:.3f} / {p99:.3f}",
            f"{rps:,.0f}",
            "",
        )
    table.add_row(
        f"added by metrics (HTTP, median of {args.rounds} rounds)",
        f"{med[True][1] - med[False][1]:+.3f} / {med[True][2] - med[False][2]:+.3f}",
        "",
        f"≤ {TARGET_MS} ms P50",
    )
    table.add_row(
        f"in process: the metrics observer per request ({args.calls:,} calls)",
        f"{micro50 / 1000:.4f} / {micro99 / 1000:.4f}",
        "",
        f"≤ {TARGET_MS} ms P50",
    )
    table.add_row("in process: one background flush (off the request path)", f"{flush_us / 1000:.4f}", "", "")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
