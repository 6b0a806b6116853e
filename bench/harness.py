"""Pieces shared by the bench scripts: free ports, a fake-backend ``llmdock serve``, wrk at one connection."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FAKE_CONFIG = (
    "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
    "log_level: warning\nmodels:\n  fake: {backend: fake}\n"
)


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
    full_env = {**os.environ, "LLMDOCK_HOME": str(home), **(env or {})}
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/llmdock"), "serve", "--config", str(cfg), "--port", str(port)],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, url + "/health", None, timeout_s=60)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        if own_home:
            shutil.rmtree(home, ignore_errors=True)


def wait_until_answering(proc: subprocess.Popen[bytes], url: str, body: str | None, timeout_s: float) -> None:
    """Poll ``url`` (GET, or POST ``body``) until it answers 2xx; exit the bench if the server dies or never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if body is None:
                resp = httpx.get(url, timeout=30)
            else:
                resp = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=30)
            if resp.is_success:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"llmdock did not start answering {url} (exit code {proc.poll()})")
        time.sleep(0.2)
