"""Instructions the guards execute per request and per detector: figures that other load cannot move.

    .venv/bin/python bench/guard_instructions.py                                   # this checkout
    git archive <commit> src | tar -x -C /tmp/old
    .venv/bin/python bench/guard_instructions.py --src /tmp/old/src --src src      # before / after

For each source tree a worker process (``PYTHONPATH`` = that tree) runs under ``valgrind --tool=callgrind``
with counting off; it builds the ``guard_in`` and ``guard_out`` stages with their default detectors over
the fake backend, warms every part up, and then, part by part, the driver switches counting on, the worker
runs the part over its texts, and the driver reads the count. Parts: a whole guarded request (``guard_in`` on
one user message, ``guard_out`` on the answer ``hello from upstream``) with issue 16's 291-character parcel
enquiry and with 1,000-character prompts from the test split; the text work the classifiers share
(normalisation and hashed n-grams); and each default input detector alone on the 1,000-character prompts,
the shared text work already done. Instructions are per text; the worker's own loop and the line it reads
and writes are counted too (a few thousand instructions). Needs Debian's valgrind; about 3 minutes per tree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from gateway_instructions import _dump
from guard_timing import DEFAULT_CHAIN, ensure_models, test_rows, thousand_char_prompts
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
PARCEL = (
    "Hello, I ordered two novels last Tuesday and the parcel has not arrived yet. The tracking page says it "
    "left the warehouse on Wednesday. Could you tell me what usually happens in such cases and whether I "
    "should wait a few more days before asking for a replacement? Thanks a lot for your help."
)
ANSWER = "hello from upstream"  # what the constant upstream of gateway_overhead.sh answers


# ---- the worker: runs under callgrind, PYTHONPATH = the tree under test ----


def _parts(
    model_dir: Path, prompts: list[str]
) -> dict[str, tuple[int, Callable[[], Coroutine[Any, Any, None]]]]:
    from llmdock.backends.base import Generation, GenerationRequest, SamplingParams
    from llmdock.config import ModelConfig, Settings
    from llmdock.errors import GuardBlocked
    from llmdock.guards.base import GuardText
    from llmdock.pipeline import RequestContext
    from llmdock.runtime import Runtime

    settings = Settings(
        home=Path(tempfile.mkdtemp()), include_builtin_models=False, models={"fake": ModelConfig(backend="fake")},
        default_model="fake", default_embedding_model="",
        pipeline=["preprocess", "guard_in", "generate", "guard_out", "postprocess"],
        guards={"model_dir": str(model_dir)},
    )  # fmt: skip
    runtime = Runtime(settings, with_store=False)
    guard_in, guard_out = runtime.pipeline.stages[1], runtime.pipeline.stages[3]

    async def request(text: str) -> None:
        req = GenerationRequest("chat", SamplingParams(), messages=[{"role": "user", "content": text}])
        ctx = RequestContext("chat", "fake", runtime.backend("fake"), request=req)
        with contextlib.suppress(GuardBlocked):
            await guard_in(ctx)
            ctx.generation = Generation(ANSWER, 5, 4)
            await guard_out(ctx)

    def requests(texts: list[str]) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            for text in texts:
                await request(text)

        return run

    def prepared() -> list[Any]:
        items = [GuardText(p, "user", "input") for p in prompts]
        for item in items:
            item.ngrams().ids()
        return items

    async def text_work() -> None:
        for p in prompts:
            GuardText(p, "user", "input").ngrams().ids()

    def detector(entry: Any) -> Callable[[], Coroutine[Any, Any, None]]:
        async def run() -> None:
            for item in items:
                await entry.detector.detect(item)

        items = prepared()
        return run

    inputs = guard_in.policies.base["input"]
    parcels = [PARCEL] * len(prompts)
    return {
        "guarded request, parcel enquiry (291 chars)": (len(parcels), requests(parcels)),
        "guarded request, 1,000-char prompt": (len(prompts), requests(prompts)),
        "  text work (normalise + n-grams), 1,000 chars": (len(prompts), text_work),
        **{f"  {name}, 1,000 chars": (len(prompts), detector(inputs[name])) for name in DEFAULT_CHAIN},
    }


def worker_main(model_dir: Path, prompts_file: Path) -> None:
    parts = _parts(model_dir, json.loads(prompts_file.read_text()))
    for _, run in parts.values():  # warm up: caches, first calls
        asyncio.run(run())
    print("PARTS " + json.dumps({name: n for name, (n, _) in parts.items()}), flush=True)
    for line in sys.stdin:
        n, run = parts[line.rstrip("\n")]
        asyncio.run(run())
        print(f"DONE {n}", flush=True)


# ---- the driver ----


def count(src: Path, model_dir: Path, prompts_file: Path, work: Path) -> dict[str, float]:
    """Instructions per text of each part, for the tree ``src``."""
    work = Path(
        tempfile.mkdtemp(dir=work)
    )  # a tree's dumps of their own (callgrind numbers them from 1 again)
    out = work / "callgrind.out"
    worker = f"{sys.executable} {__file__} --worker --model-dir {model_dir} --prompts-file {prompts_file}"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *worker.split(),
    ]
    env = {**os.environ, "PYTHONPATH": str(src), "OPENBLAS_NUM_THREADS": "1"}  # see gateway_instructions.py
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    assert proc.stdout is not None
    pid = str(proc.pid)
    try:
        line = ""
        while not line.startswith("PARTS "):
            line = proc.stdout.readline()
            if not line:
                sys.exit(f"the worker for {src} exited (code {proc.wait()})")
        parts: dict[str, int] = json.loads(line[len("PARTS ") :])
        per_text = {}
        for name in parts:
            subprocess.run(["callgrind_control", "--instr=on", pid], capture_output=True, check=True)
            proc.stdin.write(name + "\n")
            proc.stdin.flush()
            done = int(proc.stdout.readline().split()[1])
            per_text[name] = _dump(pid, work, "part") / done
            subprocess.run(["callgrind_control", "--instr=off", pid], capture_output=True, check=True)
    finally:
        proc.stdin.close()
        proc.wait(timeout=300)
    return per_text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", type=Path, action="append", help="source tree(s) to measure [src]")
    parser.add_argument("--model-dir", type=Path, default=Path.home() / ".llmdock" / "guards")
    parser.add_argument("--prompts", type=int, default=60, help="texts per part")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.model_dir, args.prompts_file)
        return
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install valgrind")
    ensure_models(args.model_dir)
    sources = [s.resolve() for s in args.src or [ROOT / "src"]]
    table = Table(
        "instructions per text", *map(str, sources), title="guards under callgrind (default detectors)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        prompts_file = Path(tmp) / "prompts.json"
        prompts_file.write_text(json.dumps(thousand_char_prompts(test_rows())[: args.prompts]))
        figures = [count(src, args.model_dir, prompts_file, Path(tmp)) for src in sources]
    for name in figures[0]:
        cells = [f"{f[name] / 1e3:,.0f} k" for f in figures]
        if len(figures) > 1:
            cells[-1] += f" ({f'{figures[-1][name] / figures[0][name] - 1:+.0%}'})"
        table.add_row(name, *cells)
    Console(width=150).print(table)
    print(f"default input chain: {', '.join(DEFAULT_CHAIN)}; output chain: secrets, leakage")


if __name__ == "__main__":
    main()
