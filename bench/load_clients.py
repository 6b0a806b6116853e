"""Closed-loop HTTP clients and the scriptable upstream as a process of its own, shared by faults.py and soak.py.

``Load`` runs ``clients`` loops, each sending the next request as soon as the last one is answered, and keeps
one ``Outcome`` per request: how it ended, how long it took, and which upstream's text it carried. A streamed
answer is read to its end and judged as a client would: a normal stream (text, then ``[DONE]``), a stream
ended by an SSE error event, or anything else (a 5xx, a connection dropped mid-stream, a timeout), which is
a failure. ``Upstream`` is ``tests/upstream.py`` run as a process, so it can be killed, stopped and resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
from harness import ROOT, Spawned, free_port, percentiles

OK, ERROR_EVENT = "ok", "error event"


@dataclass(slots=True)
class Outcome:
    end: float  # seconds since the load started
    ms: float
    kind: str  # OK, ERROR_EVENT, or why it failed
    text: str = ""
    trace_id: str = ""


@dataclass
class Load:
    """``clients`` closed loops posting ``body`` (or the bodies of a list in turn) to ``url``; every answer
    lands in ``outcomes`` as it comes."""

    url: str
    body: dict[str, Any] | list[dict[str, Any]]
    clients: int
    timeout_s: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0

    async def run(self, seconds: float) -> None:
        self.started = time.perf_counter()
        stop_at = self.started + seconds
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(limits=limits, timeout=self.timeout_s, headers=self.headers) as http:
            await asyncio.gather(*(self._loop(http, stop_at) for _ in range(self.clients)))

    async def _loop(self, http: httpx.AsyncClient, stop_at: float) -> None:
        bodies = self.body if isinstance(self.body, list) else [self.body]
        payloads = itertools.cycle([orjson.dumps(b) for b in bodies])
        ask = self._stream if bodies[0].get("stream") else self._plain
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                kind, text, trace_id = await ask(http, next(payloads))
            except httpx.TimeoutException:
                kind, text, trace_id = "timed out (hung)", "", ""
            except httpx.HTTPError as exc:
                kind, text, trace_id = f"transport: {type(exc).__name__}", "", ""
            end = time.perf_counter()
            self.outcomes.append(Outcome(end - self.started, (end - t0) * 1000, kind, text, trace_id))

    async def _plain(self, http: httpx.AsyncClient, payload: bytes) -> tuple[str, str, str]:
        resp = await http.post(self.url, content=payload, headers={"content-type": "application/json"})
        trace_id = resp.headers.get("x-llmdock-trace-id", "")
        if resp.status_code != 200:
            return f"HTTP {resp.status_code} {_error_code(resp.content)}", "", trace_id
        return OK, str(orjson.loads(resp.content)["choices"][0]["message"]["content"]), trace_id

    async def _stream(self, http: httpx.AsyncClient, payload: bytes) -> tuple[str, str, str]:
        headers = {"content-type": "application/json"}
        async with http.stream("POST", self.url, content=payload, headers=headers) as resp:
            trace_id = resp.headers.get("x-llmdock-trace-id", "")
            if resp.status_code != 200:
                return f"HTTP {resp.status_code} {_error_code(await resp.aread())}", "", trace_id
            text, done, error = [], False, False
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    continue
                event = orjson.loads(line[6:])
                if "error" in event:
                    error = True
                for choice in event.get("choices") or []:
                    text.append(choice.get("delta", {}).get("content") or "")
        if error and not done:
            return ERROR_EVENT, "".join(text), trace_id
        if done and not error:
            return OK, "".join(text), trace_id
        return "stream ended without [DONE] or an error event", "".join(text), trace_id

    def since(self, t: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.end >= t]


def _error_code(body: bytes) -> str:
    with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
        return str(orjson.loads(body)["error"].get("code", ""))
    return ""


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    """Requests, failures (anything but a normal answer or a stream's error event), P50/P99 in ms."""
    failures: dict[str, int] = {}
    for o in outcomes:
        if o.kind not in (OK, ERROR_EVENT):
            failures[o.kind] = failures.get(o.kind, 0) + 1
    p50, p99 = percentiles([o.ms for o in outcomes]) if outcomes else (0.0, 0.0)
    return {
        "requests": len(outcomes),
        "failures": sum(failures.values()),
        "failure_kinds": failures,
        "error_events": sum(o.kind == ERROR_EVENT for o in outcomes),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
    }


class Upstream:
    """``python -m tests.upstream NAME PORT``: answers "reply from NAME"; killed, stopped or re-moded by signals."""

    MODES: ClassVar[dict[str, int]] = {"500": signal.SIGUSR1, "cut": signal.SIGHUP, "ok": signal.SIGUSR2}

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name, self.port, self.log_dir = name, free_port(), log_dir
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: Spawned | None = None

    def start(self) -> None:
        self.process = Spawned(
            [sys.executable, "-m", "tests.upstream", self.name, str(self.port)],
            os.environ.copy(),
            cwd=ROOT,
            log=self.log_dir / f"upstream-{self.name}.log",
            name=f"upstream {self.name}",
        )
        self.process.wait_answering(self.url + "/models", timeout_s=60)

    def kill(self) -> None:
        """SIGKILL: the process is gone, its port refuses connections."""
        assert self.process is not None
        os.killpg(self.process.proc.pid, signal.SIGKILL)
        self.process.proc.wait(timeout=10)

    def send(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.proc.pid, signum)

    def mode(self, mode: str) -> None:
        self.send(self.MODES[mode])

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            self.process.stop()


@contextlib.contextmanager
def upstreams(log_dir: Path, *names: str) -> Iterator[list[Upstream]]:
    ups = [Upstream(name, log_dir) for name in names]
    try:
        for up in ups:
            up.start()
        yield ups
    finally:
        for up in ups:
            up.stop()


def rss_mib_and_fds(pid: int) -> tuple[float, int]:
    """Resident memory (MiB) and open file descriptors of one process, from /proc."""
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))
