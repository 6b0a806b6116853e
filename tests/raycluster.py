"""A throwaway local Ray cluster for tests and benches: ``ray start --head --block`` on a free port of
127.0.0.1 with 2 CPUs, no dashboard, its own temp dir, this checkout's sources (and its ``tests`` package,
whose builders a test may hand the workers) on the workers' path.
``stop()`` ends that process (Ray then ends the processes it started) and, should one be left, its process
group: never anything but what this cluster started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayCluster:
    def __init__(self, cpus: int = 2, timeout_s: float = 60) -> None:
        self.port = free_port()
        self.client_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.tmp = tempfile.mkdtemp(prefix="r", dir="/tmp")  # short: Ray's socket paths have a length limit
        ray = Path(sys.executable).with_name("ray")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "RAY_USAGE_STATS_ENABLED": "0"}  # fmt: skip
        self.proc = subprocess.Popen(
            [str(ray), "start", "--head", "--block", "--port", str(self.port), "--node-ip-address",
             "127.0.0.1", "--num-cpus", str(cpus), "--include-dashboard", "false", "--temp-dir", self.tmp,
             "--ray-client-server-port", str(self.client_port), "--disable-usage-stats"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {err[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.client_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"ray start did not answer on {self.address} in {timeout_s:g} s")

    def logs(self, pattern: str = "ray_client_server*.err", tail: int = 3000) -> str:
        """The end of each of this cluster's log files matching ``pattern``: for a failed assertion's message."""
        found = sorted(Path(self.tmp).glob(f"session_latest/logs/{pattern}"))
        return (
            "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-tail:]}" for f in found) or "(no logs)"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of this cluster left behind
