"""Cache latency: an exact-cache hit through the gateway, and a semantic-cache lookup over 10,000 entries.

Exact: ``llmdock serve`` on the fake backend (a stand-in upstream, named as such: the point is what the
gateway adds), one deterministic request (temperature 0) repeated by wrk over keep-alive connections at
concurrency 1, so every request after the first is a hit; the same request with ``Cache-Control: no-cache``
is measured beside it. Semantic: the real all-MiniLM-L6-v2 embeds each query (that is most of the cost) and
the index holds 10,000 entries in one scope; P50/P99 of embed + lookup.

Usage: .venv/bin/python bench/cache_latency.py [--duration 10] [--entries 10000]
Targets (issue 4): exact hit P50 <= 1 ms; semantic lookup P50 <= 15 ms with 10,000 entries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
BODY = '{"model":"fake","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"temperature":0}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(url: str, duration: int, no_cache: bool) -> tuple[float, float, float]:
    """(requests/s, P50 ms, P99 ms) from wrk --latency at one connection."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        if no_cache:
            lua.write('wrk.headers["Cache-Control"] = "no-cache"\n')
        lua.write(f"wrk.body = '{BODY}'\n")
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{duration}s", "--latency", "-s", lua.name, url],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    ).stdout
    os.unlink(lua.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, ms("50%"), ms("99%")


def exact_cache(duration: int) -> list[tuple[str, str, str, str]]:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    home = Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    cfg = home / "llmdock.yaml"
    cfg.write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
        "log_level: warning\nmodels:\n  fake: {backend: fake}\n"
    )
    port = free_port()
    env = {**os.environ, "LLMDOCK_HOME": str(home)}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/llmdock"), "serve", "--config", str(cfg), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(url, content=BODY, headers={"content-type": "application/json"}, timeout=2)
                if r.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                sys.exit("llmdock did not start")
            time.sleep(0.2)
        hit = httpx.post(url, content=BODY, headers={"content-type": "application/json"}).headers[
            "x-llmdock-cache"
        ]
        assert hit == "hit", hit
        rows = []
        for label, no_cache in (("exact cache hit", False), ("same request, no-cache (fake backend)", True)):
            rps, p50, p99 = wrk(url, duration, no_cache)
            target = "≤ 1 ms" if not no_cache else "-"
            rows.append((label, f"{rps:,.0f} rps", f"{p50:.3f} / {p99:.3f}", target))
        return rows
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        shutil.rmtree(home, ignore_errors=True)


async def semantic_cache(entries: int, queries: int) -> tuple[str, str, str, str]:
    from llmdock.cache.semantic import SemanticIndex
    from llmdock.config import Settings
    from llmdock.runtime import Runtime

    runtime = Runtime(Settings(home=Path(tempfile.mkdtemp()), trace={"enabled": False}))
    embedder = runtime.backend("all-minilm-l6-v2")
    await embedder.start()
    rng = np.random.default_rng(0)
    index = SemanticIndex(max_entries=entries)
    filler = rng.normal(size=(entries, 384)).astype(np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    for i, v in enumerate(filler):
        index.add("scope", v, str(i).encode(), ttl_s=3600)
    await embedder.embed(["warm up"])
    times = []
    for i in range(queries):
        t0 = time.perf_counter()
        vec = np.asarray(
            (await embedder.embed([f"what is the capital of country number {i}?"])).vectors[0], np.float32
        )
        index.lookup("scope", vec / np.linalg.norm(vec), 0.95)
        times.append((time.perf_counter() - t0) * 1000)
    await runtime.close()
    times.sort()
    p50, p99 = statistics.median(times), times[int(0.99 * (len(times) - 1))]
    return (
        f"semantic lookup ({index.size():,} entries, embed + search)",
        f"{queries} queries",
        f"{p50:.2f} / {p99:.2f}",
        "≤ 15 ms",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows = exact_cache(args.duration)
    rows.append(asyncio.run(semantic_cache(args.entries, args.queries)))
    table = Table("measurement", "throughput", "P50 / P99 ms", "target", title="llmdock cache latency")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
