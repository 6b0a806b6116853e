"""Where the P99 at c=1 comes from: each configuration's slowest requests taken apart (issue 15).

For each configuration ``llmdock serve`` (one model ``fake`` -> ``openai_compat`` -> a constant nginx upstream,
as gateway_overhead.sh has it) runs under tail_probe.py, wrk sends requests one at a time, and the probe's
per-request record is read back. Printed per configuration:

- wrk's P50 / P99 (the client's view, loopback and wrk included), and the app's own P50 / P99 / P99.9 wall
  time per request beside its event-loop CPU time (a load-independent figure);
- the slowest 1 % of requests (by the app's wall time): how many ran a cyclic garbage collection and how
  long those took, how many were preempted (an involuntary context switch of the loop thread), and how much
  of their time was CPU;
- collections per 1,000 requests by generation, with their P50 / max durations;
- CPU per request of the gateway process and of the trace ingester process (which shares the 2 cores).

Usage: .venv/bin/python bench/tail_c1.py [--seconds 10] [--rounds 1] [--prompt pii] [--only NAME]
Needs Debian's nginx and wrk. Under load from elsewhere the wall figures move; the CPU and GC figures less.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway_instructions import UPSTREAM
from harness import Spawned, free_port, options, wrk

HERE = Path(__file__).resolve().parent
PROMPTS = {
    "hello": "hello",  # gateway_overhead.sh's prompt: no capital, digit or @, so Presidio is skipped
    "pii": "Mail maria.gonzalez@example.org or call 415-555-0173 about my order.",  # defaults_cost.py's
}
CONFIGS = {
    "traces off": "trace: {enabled: false}\nprivacy: {pii: 'off'}\n",
    "journal + ingester, PII off": "privacy: {pii: 'off'}\n",
    "defaults (journal + ingester + PII mask)": "",
    "defaults, writer thread": "trace: {ingest: thread}\n",
}
# Experiments (--only): the ingester's scheduling changed from outside once it runs (renice, chrt)
RESCHEDULE = {
    "PII off, ingester reniced 19": ("privacy: {pii: 'off'}\n", ["renice", "-n", "19", "-p"]),
    "PII off, ingester SCHED_IDLE": ("privacy: {pii: 'off'}\n", ["chrt", "--idle", "-p", "0"]),
    "PII off, ingester renice 0": ("privacy: {pii: 'off'}\n", ["renice", "-n", "0", "-p"]),
}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ingesters() -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"llmdock.store.ingest" in cmd:
                found.append(int(proc.name))
    return found


def _upstream(work: Path) -> tuple[Spawned, int]:
    """The constant nginx upstream (gateway_instructions.py's): the process and its port."""
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(UPSTREAM.format(dir=work, port=port))
    return Spawned(["nginx", "-p", str(work), "-c", str(conf)]), port


def _perf_sched(home: Path) -> Spawned:
    perf = Spawned(
        ["perf", "sched", "record", "-k", "CLOCK_MONOTONIC", "-o", str(home / "sched.data")],
        log=home / "perf.log",
    )
    time.sleep(1.0)  # perf is recording
    return perf


def sched_delays(
    home: Path, gateway: int, ingesters: list[int], min_ms: float = 0.2
) -> tuple[dict[str, float], list[tuple[float, float, str]]]:
    """Milliseconds the gateway's event loop thread waited, woken, for a core, by who held that core (from
    ``perf sched timehist``): each wait of at least ``min_ms`` is split among the tasks that ran on its CPU.
    Also each such piece of waiting: (start, end, who), in ``time.perf_counter()`` seconds (perf records
    CLOCK_MONOTONIC, which perf_counter reads on Linux)."""
    text = subprocess.run(
        ["perf", "sched", "timehist", "-i", str(home / "sched.data")], capture_output=True, text=True
    ).stdout
    rows = []  # (end s, cpu, tid, pid, name, run ms, sch delay ms)
    for line in text.splitlines():
        m = re.match(
            r"\s*([\d.]+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:/(\d+))?\]\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line
        )
        if m:
            tid = int(m.group(4))
            pid = int(m.group(5) or tid)
            rows.append(
                (
                    float(m.group(1)),
                    int(m.group(2)),
                    tid,
                    pid,
                    m.group(3),
                    float(m.group(8)),
                    float(m.group(7)),
                )
            )
    by_cpu: dict[int, list[tuple[float, float, int, int, str]]] = {}
    for end, cpu, tid, pid, name, run_ms, _ in rows:
        by_cpu.setdefault(cpu, []).append((end - run_ms / 1e3, end, tid, pid, name))
    blame: dict[str, float] = {}
    pieces = []
    for end, cpu, tid, _pid, _name, run_ms, delay in rows:
        if tid != gateway or delay < min_ms:
            continue
        lo, hi = end - run_ms / 1e3 - delay / 1e3, end - run_ms / 1e3
        blame["(waits counted)"] = blame.get("(waits counted)", 0) + 1
        for s0, s1, otid, opid, oname in by_cpu[cpu]:
            overlap = min(s1, hi) - max(s0, lo)
            if overlap <= 0 or otid == gateway:
                continue
            who = (
                "ingester"
                if opid in ingesters
                else "gateway's other threads"
                if opid == gateway
                else oname
                if oname in ("wrk", "nginx")
                else "swapper (idle)"
                if otid == 0
                else "other processes"
            )
            blame[who] = blame.get(who, 0) + overlap * 1e3
            pieces.append((max(s0, lo), min(s1, hi), who))
    return blame, pieces


def run(
    name: str,
    config: str,
    upstream: int,
    seconds: int,
    prompt: str,
    work: Path,
    sched: bool = False,
    reschedule: list[str] | None = None,
    src: Path | None = None,
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    cfg = home / "llmdock.yaml"
    cfg.write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n"
        f"  fake: {{backend: openai_compat, base_url: 'http://127.0.0.1:{upstream}/v1', upstream_model: fake}}\n"
        + config
    )
    port, out = free_port(), home / "probe.json"
    server = Spawned(
        [
            sys.executable,
            str(HERE / "tail_probe.py"),
            str(out),
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(port),
        ],
        {**os.environ, "LLMDOCK_HOME": str(home), **({"PYTHONPATH": str(src)} if src else {})},
        log=home / "server.log",
        name=name,
    )
    body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": prompt}], "max_tokens": 8})
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        server.wait_answering(url, body, timeout_s=120)
        wrk(url, 3, body)  # warm up
        ingesters = _ingesters()
        for pid in ingesters if reschedule else ():
            subprocess.run([*reschedule, str(pid)], check=True, capture_output=True)
        cpu0 = _cpu_s(server.proc.pid), sum(_cpu_s(p) for p in ingesters)
        perf = _perf_sched(home) if sched else None
        start = time.perf_counter()
        rps, p50, p99 = wrk(url, seconds, body)
        end = time.perf_counter()
        if perf is not None:
            perf.stop()
        cpu1 = _cpu_s(server.proc.pid), sum(_cpu_s(p) for p in ingesters)
        load = os.getloadavg()[0]
    finally:
        server.stop(timeout=30)
    data = json.loads(out.read_text())
    blame, pieces = sched_delays(home, server.proc.pid, ingesters) if sched else ({}, [])
    reqs = [r for r in data["requests"] if start <= r[0] <= end]
    gcs = [g for g in data["collections"] if start <= g[0] <= end]
    shutil.rmtree(home, ignore_errors=True)
    return {
        "name": name,
        "wrk": (rps, p50, p99),
        "load": load,
        "requests": reqs,
        "collections": gcs,
        "gateway_cpu_ms": (cpu1[0] - cpu0[0]) * 1e3 / max(len(reqs), 1),
        "ingester_cpu_ms": (cpu1[1] - cpu0[1]) * 1e3 / max(len(reqs), 1),
        "sched": blame,
        "pieces": pieces,
    }


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def report(res: dict[str, Any]) -> None:
    reqs, gcs = res["requests"], res["collections"]
    rps, p50, p99 = res["wrk"]
    wall = [r[1] * 1e3 for r in reqs]
    cpu = [r[2] * 1e3 for r in reqs]
    print(f"\n== {res['name']}  (load average {res['load']:.2f})")
    print(f"wrk: {rps:,.0f} requests/s, P50 {p50:.3f} ms, P99 {p99:.3f} ms")
    print(
        f"app wall P50 {_q(wall, 0.5):.3f} P99 {_q(wall, 0.99):.3f} P99.9 {_q(wall, 0.999):.3f} ms; "
        f"loop CPU P50 {_q(cpu, 0.5):.3f} P99 {_q(cpu, 0.99):.3f} P99.9 {_q(cpu, 0.999):.3f} ms"
    )
    print(
        f"CPU per request: gateway process {res['gateway_cpu_ms']:.3f} ms, ingester {res['ingester_cpu_ms']:.3f} ms"
    )
    for gen in (0, 1, 2):
        durs = [g[2] * 1e3 for g in gcs if g[1] == gen]
        if durs:
            print(
                f"gen{gen} collections: {len(durs) * 1000 / max(len(reqs), 1):.1f} per 1,000 requests, "
                f"P50 {statistics.median(durs):.3f} ms, max {max(durs):.3f} ms"
            )
    cut = _q(wall, 0.99)
    slow = [r for r in reqs if r[1] * 1e3 >= cut]
    in_gc = []
    for r in slow:
        inside = [g for g in gcs if r[0] <= g[0] <= r[0] + r[1]]
        in_gc.append(sum(g[2] for g in inside) * 1e3)
    with_gc = [t for t in in_gc if t > 0]
    n = max(len(slow), 1)
    print(
        f"slowest 1 % ({len(slow)} requests, >= {cut:.3f} ms): mean wall {statistics.fmean(r[1] * 1e3 for r in slow):.3f} ms, "
        f"loop CPU {statistics.fmean(r[2] * 1e3 for r in slow):.3f} ms, process CPU "
        f"{statistics.fmean(r[3] * 1e3 for r in slow):.3f} ms"
    )
    print(
        f"  with a collection inside: {len(with_gc)} ({100 * len(with_gc) / n:.0f} %), their GC time mean "
        f"{statistics.fmean(with_gc) if with_gc else 0:.3f} ms; preempted (involuntary switch): "
        f"{sum(1 for r in slow if r[4] > 0)} ({100 * sum(1 for r in slow if r[4] > 0) / n:.0f} %); "
        f"all requests preempted: {100 * sum(1 for r in reqs if r[4] > 0) / max(len(reqs), 1):.1f} %"
    )
    if res["sched"]:
        blame = dict(res["sched"])
        waits = blame.pop("(waits counted)", 0)
        parts = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(blame.items(), key=lambda kv: -kv[1]))
        print(f"loop thread's waits for a core >= 0.2 ms: {waits:.0f}, held by: {parts}")
        quiet_cycles(reqs, res["pieces"])


def quiet_cycles(reqs: list[list[float]], pieces: list[tuple[float, float, str]]) -> None:
    """Each request's cycle (from the previous request's end to its own: what the client waits, the wakeup
    for it included) with and without the loop's waits for a core held by processes outside this bench."""
    ends = [r[0] + r[1] for r in reqs]
    cycles, quiet, ingester = [], [], []
    pieces = sorted(pieces)
    j = 0
    for prev, end in itertools.pairwise(ends):
        while j < len(pieces) and pieces[j][1] <= prev:
            j += 1
        waits: dict[str, float] = {}
        k = j
        while k < len(pieces) and pieces[k][0] < end:
            lo, hi, who = pieces[k]
            waits[who] = waits.get(who, 0.0) + max(0.0, min(hi, end) - max(lo, prev))
            k += 1
        cycle = (end - prev) * 1e3
        cycles.append(cycle)
        quiet.append(cycle - waits.get("other processes", 0.0) * 1e3)
        ingester.append(waits.get("ingester", 0.0) * 1e3)
    cut = _q(quiet, 0.99)
    slow = [i for i, q in enumerate(quiet) if q >= cut]
    print(
        f"cycle P50 {_q(cycles, 0.5):.3f} P99 {_q(cycles, 0.99):.3f} ms; without other processes' holds "
        f"P50 {_q(quiet, 0.5):.3f} P99 {cut:.3f} ms; in those slowest 1 %: ingester's holds "
        f"{statistics.fmean(ingester[i] for i in slow):.3f} ms on average, in "
        f"{sum(1 for i in slow if ingester[i] > 0)} of {len(slow)}"
    )


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompt", choices=sorted(PROMPTS), default="hello")
    parser.add_argument("--only", action="append", help="configurations whose name contains this")
    parser.add_argument("--json", type=Path, help="write every run's raw records here")
    parser.add_argument(
        "--sched", action="store_true", help="perf sched: who held the core the loop waited for"
    )
    parser.add_argument(
        "--src",
        type=Path,
        action="append",
        help="source tree(s) to run, in turn (git archive C src | tar -x)",
    )
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install nginx wrk")
    work = Path(tempfile.mkdtemp(prefix="llmdock-tail-"))
    nginx, upstream = _upstream(work)
    every = {k: (v, None) for k, v in CONFIGS.items()} | RESCHEDULE
    chosen = {
        k: v
        for k, v in every.items()
        if (k in CONFIGS and not args.only) or any(o in k for o in args.only or ())
    }
    results = []
    try:
        time.sleep(0.5)
        for _ in range(args.rounds):
            for src in args.src or [None]:
                for name, (config, reschedule) in chosen.items():
                    label = f"{name} [{src}]" if src else name
                    res = run(
                        label,
                        config,
                        upstream,
                        args.seconds,
                        PROMPTS[args.prompt],
                        work,
                        args.sched,
                        reschedule,
                        src.resolve() if src else None,
                    )
                    report(res)
                    results.append(res)
    finally:
        nginx.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
