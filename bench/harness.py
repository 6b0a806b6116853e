"""Pieces shared by the bench scripts: free ports, servers in their own process group (``llmdock serve``, on
the fake backend or any config), waiting for them to answer, wrk at one connection, percentiles, the wall time
and peak resident memory of a command's process tree."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from cpu_load import process_tree_rss_mib

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ("mypy", "mypyc/doc/")  # the evaluation benches' questions are made from these sentences
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


def llmdock_command(*args: str) -> list[str]:
    """``llmdock ARGS`` from the interpreter's own environment (the venv the bench runs in)."""
    script = Path(sys.executable).parent / "llmdock"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "llmdock"]
    return [*head, *args]


def serve_command(port: int, *args: str) -> list[str]:
    """``llmdock serve`` from the interpreter's own environment (the venv the bench runs in)."""
    return llmdock_command("serve", "--port", str(port), *args)


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
    with llmdock_server(home, config, env) as (url, _server):
        yield url


@contextmanager
def llmdock_server(
    home: Path | None = None,
    config: str = FAKE_CONFIG,
    env: dict[str, str] | None = None,
    *,
    timeout_s: float = 60.0,
) -> Iterator[tuple[str, Spawned]]:
    """``llmdock serve`` with ``config`` (llmdock.yaml's text) in ``home`` (a temporary one when None) on a free
    port: (its base URL, the process) once /health answers; stopped on exit. Exits the bench if it never answers."""
    own_home = home is None
    home = home or Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    home.mkdir(parents=True, exist_ok=True)
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
            server.wait_answering(url + "/health", timeout_s=timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            sys.exit(f"llmdock did not start answering: {exc}")
        yield url, server
    finally:
        server.stop(timeout=15)
        if own_home:
            shutil.rmtree(home, ignore_errors=True)


def source_sentences() -> tuple[list[str], str]:
    """The prose sentences of mypyc's .rst docs (bullets unwrapped; directives, code, tables left out)."""
    package, folder = SOURCE
    files = sorted(
        Path(str(f.locate()))
        for f in metadata.files(package) or []
        if str(f).startswith(folder) and str(f).endswith(".rst")
    )
    sentences: dict[str, None] = {}
    for path in files:
        text = re.sub(r"^\s*[-*]\s+", "", path.read_text(encoding="utf-8"), flags=re.M)
        for block in re.split(r"\n\s*\n", text):
            lines = [line.strip() for line in block.splitlines()]
            if any(
                line.startswith(("..", "=", "|", "+", "#", ">>>", "$"))
                or line.endswith("::")
                or re.fullmatch(r"[-=~^]+", line)
                for line in lines
            ):
                continue
            for sentence in re.split(r"(?<=[a-z0-9)][.!?])\s+(?=[A-Z])", " ".join(lines)):
                if (
                    5 <= len(sentence.split()) <= 25
                    and sentence[0].isupper()
                    and sentence[-1] in ".?!"
                    and not re.search(r"[`|_*<>{}\\\[\]]|http", sentence)
                ):
                    sentences[sentence] = None
    where = f"{package}=={metadata.version(package)} {files[0].parent}/*.rst" if files else package
    return list(sentences), where


def make_rows(count: int, seed: int) -> tuple[list[dict[str, Any]], str, int]:
    """``count`` cases ``{id, input, expected}`` from the shuffled sentences (see eval_speed.py's docstring):
    (rows, where the sentences came from, how many distinct sentences there are)."""
    sentences, where = source_sentences()
    if not sentences:
        raise SystemExit(f"no sentences found in {where}: is the dev extra (mypy) installed?")
    order = sentences[:]
    random.Random(seed).shuffle(order)
    rows = []
    for i in range(count):
        sentence = order[(i // 2) % len(order)] if count <= 2 * len(order) else order[i % len(order)]
        if i % 2 == 0:
            question, expected = f"Repeat this sentence exactly: {sentence}", sentence
        else:
            question = f"What is the first word of this sentence? {sentence}"
            expected = sentence.split()[0].strip(",.;:")
        rows.append({"id": f"q{i:03d}", "input": question, "expected": expected})
    return rows, where, len(sentences)


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (1 to 99) of ``values``; the value itself when there is only one."""
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def percentiles(times_ms: list[float]) -> tuple[float, float]:
    """(P50, P99) of ``times_ms``: the median, and the value 99 % of the way along them sorted."""
    ordered = sorted(times_ms)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


class PeakRss:
    """Polls the resident memory of process trees in a background thread and keeps each tree's peak (MiB).

    ``watch(name, pid)`` adds a tree (a process and all its descendants, VmRSS summed from /proc at each poll);
    ``peak[name]`` is the highest sum seen. Use it as a context manager: polling stops on exit.
    """

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak: dict[str, float] = {}
        self._pids: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self._pids[name] = pid
        self.peak.setdefault(name, 0.0)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for name, pid in list(self._pids.items()):
                self.peak[name] = max(self.peak[name], process_tree_rss_mib(pid))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    """What ``run_measured`` saw of one command."""

    seconds: float  # wall time from its start to its exit
    cpu_s: float  # user + system CPU of it and the descendants it waited for
    peak_mib: dict[str, float]  # peak RSS of its tree ("client") and of each tree it was asked to watch
    code: int  # its exit code


def run_measured(
    cmd: list[str], env: dict[str, str], *, cwd: Path, log: Path, also: dict[str, int] | None = None
) -> Measured:
    """Run ``cmd`` to its end, its output in ``log``, watching its process tree and the trees in ``also``
    (name -> pid) while it runs."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with PeakRss() as rss:
        for name, pid in (also or {}).items():
            rss.watch(name, pid)
        proc = Spawned(cmd, env, cwd=cwd, log=log)
        rss.watch("client", proc.proc.pid)
        code = proc.proc.wait()
        seconds = time.perf_counter() - proc.started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Measured(seconds, cpu, rss.peak, code)
