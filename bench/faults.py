"""Faults under load: one of two deployments of a model fails in the middle of sustained load, then comes back.

A real `llmdock serve` routes model `m` over two `openai_compat` deployments, `a` and `b`, each the
scriptable upstream of tests/upstream.py in a process of its own. `--clients` closed-loop clients load it for
`--seconds` per scenario; at 20 % of that time `b` fails, at 50 % it is repaired:

  gone        b is killed (SIGKILL), later started again on its port
  hang        b is stopped (SIGSTOP: the kernel still accepts its connections, nothing answers), later resumed
  500         b answers every request with a 500, later with answers again
  stream-500  as 500, with streaming clients: a stream fails over before its first token, so every client
              must see a normal stream
  stream-cut  streaming clients; b's streams die after their first token: those end with an SSE error
              event (never a hang, never a stream that just stops), the others are normal

Per scenario it prints requests, failed requests (anything but an answer or, for streams, an SSE error
event), P50/P99, b's breaker transitions as /v1/deployments showed them (polled every 0.1 s), and how many
answers b served after it was repaired (the breaker closed and traffic came back). Targets: 0 failed, an
`open` transition, b closed again and serving at the end. Latency figures depend on the machine's other load.

    .venv/bin/python bench/faults.py                       # 60 s per scenario at c=32
    .venv/bin/python bench/faults.py --seconds 10 --scenario hang --json /tmp/faults.json
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from harness import Spawned, free_port, options, serve_command
from load_clients import ERROR_EVENT, Load, Upstream, summary, upstreams
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

TIMEOUT = "{connect_s: 1, first_byte_s: 2, total_s: 2}"
CONFIG = """include_builtin_models: false
default_model: m
default_embedding_model: ''
log_level: warning
cache: {{exact: false}}
models:
  m:
    retries: 2
    retry_backoff_s: 0.01
    breaker: {{failures: 5, window_s: 10, cooldown_s: {cooldown}}}
    health_check_interval_s: 0
    deployments:
      - {{name: a, backend: openai_compat, base_url: '{a}', upstream_model: m, timeout: {timeout}}}
      - {{name: b, backend: openai_compat, base_url: '{b}', upstream_model: m, timeout: {timeout}}}
"""


@dataclass(frozen=True)
class Scenario:
    name: str
    stream: bool
    fail: Callable[[Upstream], None]
    repair: Callable[[Upstream], None]


SCENARIOS = [
    Scenario("gone", False, Upstream.kill, Upstream.start),
    Scenario("hang", False, lambda u: u.send(signal.SIGSTOP), lambda u: u.send(signal.SIGCONT)),
    Scenario("500", False, lambda u: u.mode("500"), lambda u: u.mode("ok")),
    Scenario("stream-500", True, lambda u: u.mode("500"), lambda u: u.mode("ok")),
    Scenario("stream-cut", True, lambda u: u.mode("cut"), lambda u: u.mode("ok")),
]


class BreakerWatch:
    """Polls /v1/deployments and keeps each change of deployment ``dep``'s breaker state, with its time."""

    def __init__(self, url: str, dep: str) -> None:
        self.url, self.dep = url + "/v1/deployments", dep
        self.transitions: list[tuple[float, str]] = []

    async def state(self, http: httpx.AsyncClient) -> dict[str, Any]:
        data = (await http.get(self.url)).json()["data"]
        return next(d for route in data for d in route["deployments"] if d["id"] == self.dep)

    async def run(self, started: float, seconds: float) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while (now := time.perf_counter()) < started + seconds:
                state = (await self.state(http))["breaker"]["state"]
                if not self.transitions or self.transitions[-1][1] != state:
                    self.transitions.append((now - started, state))
                await asyncio.sleep(0.1)


async def drive(scenario: Scenario, url: str, b: Upstream, clients: int, seconds: float) -> dict[str, Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": scenario.stream}
    load = Load(url + "/v1/chat/completions", body, clients)
    watch = BreakerWatch(url, "b")
    marks: dict[str, float] = {}

    async def fault() -> None:
        await asyncio.sleep(0.2 * seconds)
        marks["fail"] = time.perf_counter() - load.started
        await asyncio.to_thread(scenario.fail, b)
        await asyncio.sleep(load.started + 0.5 * seconds - time.perf_counter())
        await asyncio.to_thread(scenario.repair, b)
        marks["repair"] = time.perf_counter() - load.started

    started = time.perf_counter()
    await asyncio.gather(load.run(seconds), fault(), watch.run(started, seconds))
    async with httpx.AsyncClient(timeout=10) as http:
        final = (await watch.state(http))["breaker"]["state"]
    after = [o for o in load.outcomes if o.end > marks["repair"]]
    return {
        "scenario": scenario.name,
        "clients": clients,
        "seconds": seconds,
        **summary(load.outcomes),
        "fail_at_s": round(marks["fail"], 2),
        "repair_at_s": round(marks["repair"], 2),
        "transitions": [f"{state}@{t:.1f}s" for t, state in watch.transitions],
        "final_state": final,
        "served_by_b_before": sum(o.text == "reply from b" for o in load.outcomes if o.end < marks["fail"]),
        "served_by_b_after_repair": sum(o.text == "reply from b" for o in after),
        "error_events_after_repair": sum(o.kind == ERROR_EVENT for o in after),
    }


def run_scenario(
    scenario: Scenario, clients: int, seconds: float, cooldown: float, progress: Progress
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="llmdock-faults-"))
    try:
        with upstreams(home, "a", "b") as (a, b):
            cfg = home / "llmdock.yaml"
            cfg.write_text(CONFIG.format(a=a.url, b=b.url, timeout=TIMEOUT, cooldown=cooldown))
            port = free_port()
            env = {**os.environ, "LLMDOCK_HOME": str(home)}
            server = Spawned(serve_command(port, "--config", str(cfg)), env, log=home / "server.log")
            url = f"http://127.0.0.1:{port}"
            try:
                server.wait_answering(url + "/ready", timeout_s=120)
                task = progress.add_task(f"{scenario.name} (c={clients})", total=seconds)

                async def with_progress() -> dict[str, Any]:
                    ticker = asyncio.create_task(_tick(progress, task, seconds))
                    try:
                        return await drive(scenario, url, b, clients, seconds)
                    finally:
                        ticker.cancel()

                result = asyncio.run(with_progress())
                progress.update(task, completed=seconds)
                server.check_alive()
                return result
            finally:
                server.stop(timeout=15)
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def _tick(progress: Progress, task: Any, seconds: float) -> None:
    t0 = time.perf_counter()
    while True:
        progress.update(task, completed=min(seconds, time.perf_counter() - t0))
        await asyncio.sleep(0.5)


def report(results: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="one of two deployments fails under load, then comes back")
    for col in ("scenario", "requests", "failed", "SSE error events", "P50 ms", "P99 ms", "b's breaker"):
        table.add_column(col, justify="left" if col in ("scenario", "b's breaker") else "right")
    table.add_column("b serves after repair", justify="right")
    for r in results:
        table.add_row(
            r["scenario"],
            str(r["requests"]),
            str(r["failures"]) + (f" {r['failure_kinds']}" if r["failures"] else ""),
            str(r["error_events"]),
            f"{r['p50_ms']:.1f}",
            f"{r['p99_ms']:.1f}",
            " → ".join(r["transitions"]) + f" (end: {r['final_state']})",
            str(r["served_by_b_after_repair"]),
        )
    console.print(table)
    met = all(
        r["failures"] == 0
        and any(t.startswith("open") for t in r["transitions"])
        and r["final_state"] == "closed"
        and r["served_by_b_after_repair"] > 0
        for r in results
    )
    console.print(
        f"b fails at 20 % of each run and is repaired at 50 %. Target (0 failed, breaker opened, closed again "
        f"and b serving): {'met' if met else 'NOT met'}"
    )


def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--seconds", type=float, default=60.0, help="load per scenario (default 60)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--cooldown", type=float, default=2.0, help="breaker cooldown_s (default 2)")
    parser.add_argument("--scenario", action="append", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    console = Console()
    with Progress(console=console, transient=True) as progress:
        results = [run_scenario(s, args.clients, args.seconds, args.cooldown, progress) for s in chosen]
    report(results, console)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
