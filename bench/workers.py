"""Throughput of one and two gateway workers at c=32, with traces on and off, in one run.

``llmdock serve --workers N`` on the fake backend (a stand-in model: the point is what the gateway adds), wrk
with one thread and 32 connections for ``--seconds`` after a warm-up, each configuration in interleaved
rounds. On a 2-core machine wrk shares the cores with the workers, so the ratio says what the gateway's own
CPU per request allows, not what two dedicated cores would give.

Usage: .venv/bin/python bench/workers.py [--seconds 10] [--rounds 2]
Target (issue 15): two workers >= 1.8x one worker. Traces on (stored by the ingester process, the default
under serve), on with the per-process writer thread instead (``trace.ingest: thread``), and off.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import FAKE_CONFIG, Spawned, free_port, options, serve_command
from rich.console import Console
from rich.table import Table

BODY = '{"model":"fake","messages":[{"role":"user","content":"hello there"}],"max_tokens":16}'


def session_cpu_s(sid: int) -> float:
    """CPU seconds (user + system) of every live process in session ``sid``: the server, its workers, and
    the trace ingester they start."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the command: state ppid pgrp session ...
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


TRACES = {  # how traces are stored: the default under serve, the thread writer it replaced, none
    "on (ingester process)": "trace: {enabled: true}\n",
    "on (writer thread)": "trace: {ingest: thread}\n",
    "off": "trace: {enabled: false}\n",
}


def throughput(workers: int, traces: str, seconds: int) -> tuple[float, float]:
    """Requests per second, and the server's CPU milliseconds per request."""
    home = Path(tempfile.mkdtemp(prefix="llmdock-workers-"))
    (home / "llmdock.yaml").write_text(FAKE_CONFIG + TRACES[traces])
    port = free_port()
    server = Spawned(
        serve_command(port, "--config", str(home / "llmdock.yaml"), "--workers", str(workers)),
        {**os.environ, "LLMDOCK_HOME": str(home)},
        log=home / "server.log",
        name="llmdock serve",
    )
    lua = home / "post.lua"
    lua.write_text(
        f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\nwrk.body = '{BODY}'\n"
    )
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        server.wait_answering(url, BODY, timeout_s=120)
        run = ["wrk", "-t1", "-c32", "-s", str(lua), url]
        subprocess.run([*run[:1], "-d3s", *run[1:]], capture_output=True, check=True)  # warm up every worker
        cpu = session_cpu_s(server.proc.pid)
        out = subprocess.run(
            [*run[:1], f"-d{seconds}s", *run[1:]], capture_output=True, text=True, check=True
        )
        cpu = session_cpu_s(server.proc.pid) - cpu
    finally:
        server.stop(timeout=15)
        shutil.rmtree(home, ignore_errors=True)
    if "Non-2xx" in out.stdout:
        sys.exit(f"the gateway answered errors:\n{out.stdout}")
    served = int(re.search(r"(\d+) requests in", out.stdout).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    return rps, cpu * 1000 / served


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {(t, w): [] for t in TRACES for w in (1, 2)}
    for _ in range(args.rounds):
        for traces, workers in runs:
            runs[traces, workers].append(throughput(workers, traces, args.seconds))
    table = Table(
        "traces",
        "1 worker req/s",
        "2 workers req/s",
        "ratio",
        "CPU ms/request (1 / 2 workers)",
        title="llmdock serve, fake model, c=32",
    )
    for traces in TRACES:
        one, two = (statistics.median(r for r, _ in runs[traces, w]) for w in (1, 2))
        cpu1, cpu2 = (statistics.median(c for _, c in runs[traces, w]) for w in (1, 2))
        row = (traces, f"{one:,.0f}", f"{two:,.0f}", f"{two / one:.2f}x")
        table.add_row(*row, f"{cpu1:.3f} / {cpu2:.3f}")
    Console(width=120).print(table)
    print(f"medians of {args.rounds} interleaved rounds of {args.seconds} s; target: 2 workers >= 1.8x one")
    print("CPU per request counts every process of the server (workers, ingester); equal for 1 and 2 workers")
    print("means the workers do not slow each other, and what is left of the gap is cores wrk also uses")


if __name__ == "__main__":
    main()
