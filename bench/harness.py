"""Pieces shared by the bench scripts: free ports, servers in their own process group (a fake-backend
``llmdock serve``), waiting for them to answer, wrk at one connection, percentiles."""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
FAKE_CONFIG = (
    "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
    "log_level: warning\nmodels:\n  fake: {backend: fake}\n"
)


def options(doc: str) -> argparse.ArgumentParser:
    """A bench script's option parser, its docstring as the help text (line breaks kept)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wrk(
    url: str, duration: int, body: str, headers: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """(requests/s, P50 ms, P99 ms) of POST ``body`` from wrk --latency at one connection."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        for name, value in (headers or {}).items():
            lua.write(f'wrk.headers["{name}"] = "{value}"\n')
        lua.write(f"wrk.body = '{body}'\n")
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


def serve_command(port: int, *args: str) -> list[str]:
    """``llmdock serve`` from the interpreter's own environment (the venv the bench runs in)."""
    script = Path(sys.executable).parent / "llmdock"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "llmdock"]
    return [*head, "serve", "--port", str(port), *args]


class Spawned:
    """A process in a process group of its own (stopping it stops its children), its output in ``log``.

    ``started`` is the ``time.perf_counter()`` just before it was started.
    """

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str] | None = None,
        *,
        cwd: Path | None = None,
        log: Path | None = None,
        name: str = "",
    ) -> None:
        self.name = name or Path(cmd[0]).name
        self.log_path = log
        self.started = time.perf_counter()
        with log.open("wb") if log is not None else open(os.devnull, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def wait_answering(
        self,
        url: str,
        body: str | None = None,
        *,
        timeout_s: float,
        poll_s: float = 0.2,
        client: httpx.Client | None = None,
        request_timeout_s: float = 30.0,
    ) -> float:
        """Poll ``url`` (GET, or POST ``body``) until it answers 2xx; seconds since the process started.

        RuntimeError (with the log's tail) if the process exits, TimeoutError if ``timeout_s`` after the
        start it has not answered.
        """
        http: Any = client or httpx
        method, headers = ("GET", None) if body is None else ("POST", {"content-type": "application/json"})
        while time.perf_counter() < self.started + timeout_s:
            self.check_alive()
            with contextlib.suppress(httpx.TransportError):
                resp = http.request(method, url, content=body, headers=headers, timeout=request_timeout_s)
                if resp.is_success:
                    return time.perf_counter() - self.started
            time.sleep(poll_s)
        raise TimeoutError(f"{url} did not answer 2xx within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited within ``timeout``."""
        if self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def fake_server(
    home: Path | None = None, config: str = FAKE_CONFIG, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``llmdock serve`` on the fake backend (a stand-in upstream: the point is what the gateway adds)."""
    own_home = home is None
    home = home or Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    cfg = home / "llmdock.yaml"
    cfg.write_text(config)
    port = free_port()
    server = Spawned(
        serve_command(port, "--config", str(cfg)),
        {**os.environ, "LLMDOCK_HOME": str(home), **(env or {})},
        log=home / "server.log",
        name="llmdock serve",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            server.wait_answering(url + "/health", timeout_s=60)
        except (RuntimeError, TimeoutError) as exc:
            sys.exit(f"llmdock did not start answering: {exc}")
        yield url
    finally:
        server.stop(timeout=15)
        if own_home:
            shutil.rmtree(home, ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (1 to 99) of ``values``; the value itself when there is only one."""
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def percentiles(times_ms: list[float]) -> tuple[float, float]:
    """(P50, P99) of ``times_ms``: the median, and the value 99 % of the way along them sorted."""
    ordered = sorted(times_ms)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]
