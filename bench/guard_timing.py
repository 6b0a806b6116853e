"""What the guard benches share: 1,000-character prompts from the test split, the ``guard_in`` stage timed
in worker processes (one per code version, ``PYTHONPATH`` = its ``src``), and the table of the figures.

Run as a script it is such a worker (``--worker``); guard_latency.py describes what is timed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import pct
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "bench" / "data" / "guard_test.jsonl.gz"
DEFAULT_CHAIN = ["injection", "secrets", "pii", "toxicity", "prompt_length"]
FULL_CHAIN: dict[str, Any] = {
    **{name: {} for name in DEFAULT_CHAIN},
    "language": {"allowed": ["en"]},
    "regex": {"keywords": ["project falcon"]},
    "banned_topics": {"topics": {"politics": ["election"]}},
}
TARGET_MS = 10.0
console = Console(width=150)
Samples = list[list[float]]  # [wall ms, CPU ms]


def thousand_char_prompts(rows: list[dict[str, Any]]) -> list[str]:
    """Ordinary and attack texts from the test split, joined and cut to exactly 1,000 characters."""
    texts = [r["text"] for r in rows if r["task"] == "injection"]
    prompts, current = [], ""
    for text in texts:
        current = (current + " " + text).strip()
        if len(current) >= 1000:
            prompts.append(current[:1000])
            current = ""
        if len(prompts) >= 200:
            break
    return prompts


# ---- the worker: runs in a process whose PYTHONPATH points at the code under test ----


def _stage(model_dir: Path, detectors: dict[str, Any]) -> tuple[Any, Any]:
    from llmdock.config import ModelConfig, Settings
    from llmdock.runtime import Runtime

    settings = Settings(
        home=Path(tempfile.mkdtemp()), include_builtin_models=False, models={"fake": ModelConfig(backend="fake")},
        default_model="fake", default_embedding_model="", pipeline=["preprocess", "guard_in", "generate", "postprocess"],
        guards={"model_dir": str(model_dir), "input": detectors, "output": {}},
    )  # fmt: skip
    runtime = Runtime(settings, with_store=False)
    return runtime, runtime.pipeline.stages[1]


def _timed(detect: Any, sink: Samples) -> Any:
    async def run(item: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return await detect(item)
        finally:
            sink[0].append((time.perf_counter() - t0) * 1000)
            sink[1].append((time.thread_time() - c0) * 1000)

    return run


async def _worker(model_dir: Path, prompts: list[str]) -> None:
    from llmdock.backends.base import GenerationRequest, SamplingParams
    from llmdock.errors import GuardBlocked
    from llmdock.pipeline import RequestContext

    default_runtime, default_stage = _stage(model_dir, {name: {} for name in DEFAULT_CHAIN})
    full_runtime, full_stage = _stage(model_dir, FULL_CHAIN)
    per_detector: dict[str, Samples] = defaultdict(lambda: [[], []])
    for name, entry in full_stage.policies.base["input"].items():
        entry.detector.detect = _timed(entry.detector.detect, per_detector[name])

    async def once(runtime: Any, stage: Any, prompt: str, sink: Samples) -> None:
        req = GenerationRequest("chat", SamplingParams(), messages=[{"role": "user", "content": prompt}])
        ctx = RequestContext("chat", "fake", runtime.backend("fake"), request=req)
        t0, c0 = time.perf_counter(), time.thread_time()
        with contextlib.suppress(GuardBlocked):
            await stage(ctx)
        sink[0].append((time.perf_counter() - t0) * 1000)
        sink[1].append((time.thread_time() - c0) * 1000)

    done = 0
    print("READY", flush=True)
    for line in sys.stdin:
        count = int(line)
        chains: dict[str, Samples] = {"default": [[], []], "full": [[], []]}
        for sink in per_detector.values():  # emptied in place: the timed detectors hold these lists
            sink[0].clear()
            sink[1].clear()
        for i in range(done, done + count):
            prompt = prompts[i % len(prompts)]
            await once(default_runtime, default_stage, prompt, chains["default"])
            await once(full_runtime, full_stage, prompt, chains["full"])
        done += count
        print("RESULT " + json.dumps({"chains": chains, "detectors": per_detector}), flush=True)
    await default_runtime.close()
    await full_runtime.close()


# ---- the driver ----


class Worker:
    def __init__(self, label: str, src: Path, model_dir: Path, prompts_file: Path) -> None:
        self.label = label
        env = {**os.environ, "PYTHONPATH": str(src)}
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            "--model-dir",
            str(model_dir),
            "--prompts",
            str(prompts_file),
        ]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._read("READY")

    def _read(self, marker: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(marker):
                return line[len(marker) :].strip()
        raise RuntimeError(f"the {self.label} worker exited (code {self.proc.wait()})")

    def run(self, count: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{count}\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self._read("RESULT "))
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def measure(
    sources: dict[str, Path], model_dir: Path, prompts: list[str], reps: int, blocks: int = 10
) -> tuple[dict[str, dict[str, Samples]], list[float]]:
    """Per code version, samples per chain (``chain:default``, ``chain:full``) and per detector; and the
    1-minute load average read after each block."""
    figures: dict[str, dict[str, Samples]] = {label: defaultdict(lambda: [[], []]) for label in sources}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        prompts_file = Path(tmp) / "prompts.json"
        prompts_file.write_text(json.dumps(prompts))
        workers = [Worker(label, src, model_dir, prompts_file) for label, src in sources.items()]
        try:
            for w in workers:
                w.run(10)  # warm up: first calls build caches
            per_block = max(1, reps // blocks)
            for b in range(blocks):
                for w in workers if b % 2 == 0 else workers[::-1]:
                    result = w.run(per_block)
                    for chain, (wall, cpu) in result["chains"].items():
                        figures[w.label][f"chain:{chain}"][0].extend(wall)
                        figures[w.label][f"chain:{chain}"][1].extend(cpu)
                    for name, (wall, cpu) in result["detectors"].items():
                        figures[w.label][name][0].extend(wall)
                        figures[w.label][name][1].extend(cpu)
                    loads.append(os.getloadavg()[0])
        finally:
            for w in workers:
                w.close()
    return figures, loads


def print_figures(figures: dict[str, dict[str, Samples]], loads: list[float], reps: int) -> None:
    labels = list(figures)
    cores = os.cpu_count() or 1
    table = Table(
        "on a 1,000-character prompt",
        *(f"{label}: {kind}" for label in labels for kind in ("wall P50 / P99 ms", "CPU P50 / P99 ms")),
        title=f"guard_in latency ({reps} requests per code version"
        + (", versions interleaved in blocks A B B A …)" if len(labels) > 1 else ")"),
    )
    rows = {
        "chain:default": "default chain",
        "chain:full": "every input detector",
    }
    rows.update({name: f"  {name}" for name in FULL_CHAIN})
    for key, title in rows.items():
        cells = []
        for label in labels:
            wall, cpu = figures[label][key]
            cells += [
                f"{pct(wall, 50):.2f} / {pct(wall, 99):.2f}",
                f"{pct(cpu, 50):.3f} / {pct(cpu, 99):.3f}",
            ]
        table.add_row(title, *cells)
    console.print(table)
    console.print(
        f"default chain: {', '.join(DEFAULT_CHAIN)}; every input detector adds language, regex, banned_topics "
        "(the detector rows are timed inside it)"
    )
    for label in labels:
        p50 = pct(figures[label]["chain:default"][0], 50)
        verdict = "met" if p50 <= TARGET_MS else "MISSED"
        console.print(
            f"{label}: default chain wall P50 {p50:.2f} ms, target <= {TARGET_MS:.0f} ms: {verdict}"
        )
    console.print(
        f"load average (1 min) while timing: {min(loads):.2f} to {max(loads):.2f} on {cores} cores "
        f"({min(loads) / cores:.2f} to {max(loads) / cores:.2f} per core; above 1 per core, wall clock "
        "includes waiting for a core and the CPU columns are the steadier figure)"
    )


def options(description: str) -> argparse.ArgumentParser:
    """The options every guard bench takes: where the classifiers live, requests timed, an A/B baseline."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-dir", type=Path, default=Path.home() / ".llmdock" / "guards")
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--baseline", type=Path, help="another checkout's src/ to time beside this one (A/B)")
    return parser


def test_rows() -> list[dict[str, Any]]:
    """The test split (bench/data/guard_test.jsonl.gz)."""
    with gzip.open(TEST, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def ensure_models(model_dir: Path) -> None:
    """Train (once) or load llmdock's guard classifiers under ``model_dir``."""
    from llmdock.guards import training

    for task in training.TASKS:
        training.ensure_model(model_dir, task)
    for category in getattr(training, "CATEGORIES", ()):  # toxicity's, where the code under test has them
        training.ensure_model(model_dir, "toxicity", category=category)


def time_chain(args: argparse.Namespace, prompts: list[str]) -> None:
    """Time the input chain on this checkout (and ``--baseline``), and print the figures."""
    sources = {"this checkout": ROOT / "src"}
    if args.baseline is not None:
        sources = {"baseline": args.baseline.resolve(), **sources}
    with console.status("timing the input chain"):
        figures, loads = measure(sources, args.model_dir, prompts, args.reps)
    print_figures(figures, loads, args.reps)


def worker_main() -> None:
    parser = argparse.ArgumentParser(description="a guard_in timing worker (driven by guard_timing.measure)")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--prompts", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(_worker(args.model_dir, json.loads(args.prompts.read_text())))


if __name__ == "__main__":
    worker_main()
