"""Throughput of one and two gateway workers at c=32, with traces on and off, in one run.

``llmdock serve --workers N`` on the fake backend (a stand-in model: the point is what the gateway adds), wrk
with one thread and 32 connections for ``--seconds`` after a warm-up, each configuration in interleaved
rounds. On a 2-core machine wrk shares the cores with the workers, so the ratio says what the gateway's own
CPU per request allows, not what two dedicated cores would give.

Usage: .venv/bin/python bench/workers.py [--seconds 10] [--rounds 2]
Target (issue 15): two workers >= 1.8x one worker.
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


def throughput(workers: int, traces: bool, seconds: int) -> float:
    home = Path(tempfile.mkdtemp(prefix="llmdock-workers-"))
    (home / "llmdock.yaml").write_text(FAKE_CONFIG + f"trace: {{enabled: {str(traces).lower()}}}\n")
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
        out = subprocess.run(
            [*run[:1], f"-d{seconds}s", *run[1:]], capture_output=True, text=True, check=True
        )
    finally:
        server.stop(timeout=15)
        shutil.rmtree(home, ignore_errors=True)
    if "Non-2xx" in out.stdout:
        sys.exit(f"the gateway answered errors:\n{out.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))  # type: ignore[union-attr]


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    runs: dict[tuple[bool, int], list[float]] = {(t, w): [] for t in (True, False) for w in (1, 2)}
    for _ in range(args.rounds):
        for traces, workers in runs:
            runs[traces, workers].append(throughput(workers, traces, args.seconds))
    table = Table(
        "traces", "1 worker req/s", "2 workers req/s", "ratio", title="llmdock serve, fake model, c=32"
    )
    for traces in (True, False):
        one, two = (statistics.median(runs[traces, w]) for w in (1, 2))
        table.add_row("on" if traces else "off", f"{one:,.0f}", f"{two:,.0f}", f"{two / one:.2f}x")
    Console(width=120).print(table)
    print(f"medians of {args.rounds} interleaved rounds of {args.seconds} s; target: 2 workers >= 1.8x one")


if __name__ == "__main__":
    main()
