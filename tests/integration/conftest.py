"""A real ``llmdock serve`` process on the embedded models, shared by the integration tests of a session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import free_port


@dataclass
class Server:
    url: str
    home: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def env(self) -> dict[str, str]:
        return {**os.environ, "LLMDOCK_HOME": str(self.home)}


def run_cli(
    home: Path,
    *args: str,
    stdin: str | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``llmdock ARGS`` in a subprocess on ``home`` (its llmdock.yaml when there is one), ``env`` added."""
    full_env = {**os.environ, "LLMDOCK_HOME": str(home), **(env or {})}
    if (home / "llmdock.yaml").exists():
        full_env["LLMDOCK_CONFIG"] = str(home / "llmdock.yaml")
    return subprocess.run(
        [sys.executable, "-m", "llmdock", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        env=full_env,
    )


def start_server(
    home: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    headers: dict[str, str] | None = None,
    verify: Any = True,
    scheme: str = "http",
) -> Server:
    port = free_port()
    log = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "LLMDOCK_HOME": str(home), "LLMDOCK_N_THREADS": "2", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmdock", "serve", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    server = Server(f"{scheme}://127.0.0.1:{port}", home, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llmdock serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/ready", timeout=2, headers=headers, verify=verify).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"llmdock serve not ready in {timeout}s:\n{log.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=5)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("llmdock-home"))
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    """The official openai SDK on the shared server. Caching off: tests are about the model's own behaviour."""
    return openai.OpenAI(
        base_url=server.v1,
        api_key="unused",
        max_retries=0,
        timeout=300,
        default_headers={"Cache-Control": "no-cache"},
    )
