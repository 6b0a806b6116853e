"""Instructions the gateway executes per proxied request: a figure that other load on the machine cannot move.

Wall-clock figures on a shared 2-core machine swing by 2x with what else runs; an instruction count does not.
This runs ``llmdock serve`` (one model ``fake`` -> ``openai_compat`` -> a constant nginx upstream, traces on,
as bench/gateway_overhead.sh does) under ``valgrind --tool=callgrind`` with counting switched off, warms it
up, then counts every instruction of the process (event loop, trace writer thread, libraries) while wrk
sends requests one at a time, and divides by the requests served. The server's idle work (timers,
background loops) is counted alone first and its share subtracted in a second column: on a loaded machine
fewer requests fit in the counted seconds, and the idle work would otherwise inflate the per-request figure. Give ``--src`` several times to compare
source trees (e.g. ``git archive <commit> src | tar -x -C /tmp/old``) in one run.

With ``--guards MODEL_DIR`` the pipeline has ``guard_in`` and ``guard_out`` (their default detectors, the
classifiers trained into MODEL_DIR first, as gateway_overhead.sh's guarded run has them) and every request
carries issue 16's 291-character parcel enquiry. ``--pii-off`` measures each tree a second time with
``privacy.pii: off``: the difference is what the trace's PII mask costs per request.

Usage: .venv/bin/python bench/gateway_instructions.py [--seconds 40] [--src src --src /tmp/old/src] [--guards DIR]
       [--pii-off]
Needs Debian's valgrind, nginx and wrk. A run takes about 2 minutes per source tree (valgrind is slow).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Spawned, free_port, options
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
BODY = '{"model":"fake","messages":[{"role":"user","content":"hello"}],"max_tokens":8}'
PARCEL = (
    "Hello, I ordered two novels last Tuesday and the parcel has not arrived yet. The tracking page says it "
    "left the warehouse on Wednesday. Could you tell me what usually happens in such cases and whether I "
    "should wait a few more days before asking for a replacement? Thanks a lot for your help."
)
GUARDED_BODY = BODY.replace('"hello"', f'"{PARCEL}"')
GUARDED_PIPELINE = "[preprocess, guard_in, cache, generate, structured, guard_out, postprocess]"
UPSTREAM = """worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log {dir}/nginx.err warn;
events {{ worker_connections 1024; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{port};
    location /v1/chat/completions {{ default_type application/json;
      return 200 '{{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"fake","choices":[{{"index":0,"message":{{"role":"assistant","content":"hello from upstream"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":5,"completion_tokens":4,"total_tokens":9}}}}'; }}
  }}
}}
"""


def wrk(url: str, seconds: int, lua: Path) -> int:
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds}s", "--timeout", "30s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        sys.exit(f"the gateway answered errors:\n{out}")
    return int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]


def count(
    src: Path,
    upstream_port: int,
    seconds: int,
    idle_seconds: int,
    work: Path,
    guards: Path | None = None,
    pii: str = "mask",
) -> tuple[int, int, int]:
    """(requests, instructions, idle share) of one gateway built from ``src`` while wrk runs at concurrency 1.

    The idle share is what the server would have spent in the same seconds without requests. ``pii`` is
    ``privacy.pii`` (``mask``, the default, redacts every trace before it is journaled).
    """
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    (home / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n"
        f"  fake: {{backend: openai_compat, base_url: 'http://127.0.0.1:{upstream_port}/v1', upstream_model: fake}}\n"
        # valgrind runs the detectors ~50 times slower: their 250 ms fail-closed timeout would block requests
        + (
            f"pipeline: {GUARDED_PIPELINE}\nguards: {{model_dir: '{guards}', timeout_ms: 60000}}\n"
            if guards
            else ""
        )
        + f"privacy: {{pii: {pii}}}\n"
    )
    body = GUARDED_BODY if guards else BODY
    port = free_port()
    out = home / "callgrind.out"
    server = Spawned(
        [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"),
            *(sys.executable, "-m", "llmdock", "serve", "--config", str(home / "llmdock.yaml")),
            *("--port", str(port)),
        ],
        # One BLAS thread: numpy's OpenBLAS threads spin-wait after any BLAS call and callgrind counts every
        # spin, which moved the per-request figure by tens of thousands of instructions between rounds.
        {**os.environ, "PYTHONPATH": str(src), "LLMDOCK_HOME": str(home), "OPENBLAS_NUM_THREADS": "1"},
        log=home / "server.log",
        name="llmdock serve under valgrind",
    )
    pid = str(server.proc.pid)
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            server.wait_answering(url, body, timeout_s=900)  # valgrind starts slowly
        except (RuntimeError, TimeoutError) as exc:
            sys.exit(str(exc))
        lua = home / "post.lua"
        lua.write_text(
            f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\nwrk.body = '{body}'\n"
        )
        wrk(url, 8, lua)  # warm up: caches, connections, first collections
        control = ["callgrind_control", "--instr=on", pid]
        subprocess.run(control, capture_output=True, check=True)
        # First the server's idle work (timers, background loops), counted alone, so the per-request figure
        # can subtract it: else a loaded machine, serving fewer requests in the same seconds, moves it.
        idle_start = time.monotonic()
        time.sleep(idle_seconds)
        idle = _dump(pid, home, "idle")
        idle_per_s = idle / (time.monotonic() - idle_start)
        load_start = time.monotonic()
        requests = wrk(url, seconds, lua)
        load = _dump(pid, home, "load")
        load_s = time.monotonic() - load_start
        subprocess.run(["callgrind_control", "--instr=off", pid], capture_output=True, check=True)
    finally:
        server.stop(timeout=120)
    return requests, load, round(idle_per_s * load_s)


def _dump(pid: str, home: Path, name: str) -> int:
    """Instructions counted since the last dump (callgrind zeroes its counters on each dump)."""
    before = set(home.glob("callgrind.out*"))
    subprocess.run(["callgrind_control", f"--dump={name}", pid], capture_output=True, check=True)
    total = 0
    for dump in set(home.glob("callgrind.out*")) - before:
        totals = [
            line for line in dump.read_text(errors="replace").splitlines() if line.startswith("totals:")
        ]
        total += int(totals[0].split()[1]) if totals else 0
    return total


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--src", type=Path, action="append", help="source tree(s) to measure [src]")
    parser.add_argument("--seconds", type=int, default=40, help="counted seconds of wrk per tree")
    parser.add_argument("--idle-seconds", type=int, default=10, help="seconds of idle work counted first")
    parser.add_argument("--guards", type=Path, help="guard_in + guard_out, classifiers trained into this dir")
    parser.add_argument(
        "--pii-off",
        action="store_true",
        help="each tree also with privacy.pii: off (the difference is what the trace's PII mask costs)",
    )
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install valgrind nginx wrk")
    if args.guards is not None:
        from guard_timing import ensure_models

        args.guards = args.guards.resolve()
        ensure_models(args.guards)
    work = Path(tempfile.mkdtemp(prefix="llmdock-instructions-"))
    upstream_port = free_port()
    (work / "nginx.conf").write_text(UPSTREAM.format(dir=work, port=upstream_port))
    nginx = Spawned(["nginx", "-p", str(work), "-c", str(work / "nginx.conf")])
    table = Table(
        "source tree",
        "requests",
        "instructions",
        "idle work",
        "per request",
        "per request - idle",
        title="llmdock gateway, c=1" + (", guard_in + guard_out, parcel enquiry" if args.guards else ""),
    )
    try:
        time.sleep(0.5)
        runs = [
            (src, pii) for src in args.src or [ROOT / "src"] for pii in ("mask", "off")[: 1 + args.pii_off]
        ]
        for src, pii in runs:
            requests, instructions, idle = count(
                src.resolve(), upstream_port, args.seconds, args.idle_seconds, work, args.guards, pii
            )
            table.add_row(
                f"{src}, privacy.pii: {pii}",
                f"{requests:,}",
                f"{instructions / 1e6:,.0f} M",
                f"{idle / 1e6:,.0f} M",
                f"{instructions / requests / 1e3:,.0f} k",
                f"{(instructions - idle) / requests / 1e3:,.0f} k",
            )
    finally:
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
