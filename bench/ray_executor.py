"""Ray on a local cluster vs the local executor, on the same rows: what fanning out costs on one machine.

    .venv/bin/python bench/ray_executor.py            # 2,000 rows, concurrency 32
    .venv/bin/python bench/ray_executor.py --rows 500

Rows: ``{"messages": [{"role": "user", "content": "row i"}]}`` answered by the ``fake`` backend through the
whole served pipeline (no model: what is measured is the executor, not generation). A local Ray cluster is
started (``ray start --head`` on 127.0.0.1, 2 CPUs, no dashboard; stopped at the end). Timed, each after an
untimed warm-up of 50 rows on the same answerer:

  (a) local executor: ``run_rows`` + ``ServedRows`` (what ``llmdock batch run`` runs) in this process;
  (b) Ray, 1 worker; (c) Ray, 2 workers: ``run_rows`` + ``RayRows`` (``--executor ray``), the journal here;
  (a) again at the end: the first (a) runs while the new cluster still starts its idle workers; ratios are
      to the faster (a).

Also printed: how long the Ray workers took to start (connect, start the actors, build each one's runtime),
paid once per batch. On 2 cores shared with the cluster's own processes, Ray can only add cost here (a
round trip through the object store per row); its use is more machines, which this bench cannot show.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import options

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.raycluster import RayCluster

from llmdock.cli.executors import ServedRows
from llmdock.config import load_settings
from llmdock.jobs.batch import run_rows
from llmdock.jobs.batch_input import read_rows
from llmdock.jobs.batch_journal import ProgressJournal
from llmdock.jobs.executor import ExecutorSpec
from llmdock.jobs.ray_executor import RayRows, pooled

FAKE = "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n  fake: {backend: fake}\n"


async def timed(answerer: Any, src: Path, work: Path, concurrency: int, name: str) -> float:
    journal = ProgressJournal(work / f"{name}.progress", name)
    journal.open()
    t0 = time.perf_counter()
    await run_rows(read_rows(src), answerer, journal, batch_id="b", concurrency=concurrency)
    elapsed = time.perf_counter() - t0
    journal.remove()
    return elapsed


async def local_figure(
    settings: Any, src: Path, warm: Path, work: Path, concurrency: int, results: dict[str, float], label: str
) -> None:
    local = await ServedRows.start(settings)
    try:
        await timed(local, warm, work, concurrency, "warm-a")
        results[label] = await timed(local, src, work, concurrency, "a")
    finally:
        await local.close()


async def figures(args: Any, work: Path, cluster: RayCluster) -> None:
    (work / "llmdock.yaml").write_text(f"home: {work}\n{FAKE}")
    settings = load_settings(work / "llmdock.yaml")
    src, warm = work / "rows.jsonl", work / "warm.jsonl"
    src.write_text("".join(json.dumps({"model": "fake", "messages": [{"role": "user", "content": f"row {i}"}]}) + "\n"
                           for i in range(args.rows)))  # fmt: skip
    warm.write_text("".join(src.read_text().splitlines(keepends=True)[:50]))
    results: dict[str, float] = {}
    await local_figure(settings, src, warm, work, args.concurrency, results, "(a) local executor, first")
    for workers in (1, 2):
        t0 = time.perf_counter()
        spec = ExecutorSpec(kind="ray", address=cluster.address, workers=workers)
        rows = await pooled(functools.partial(ServedRows.start, settings), spec, RayRows)
        started = time.perf_counter() - t0
        try:
            await timed(rows, warm, work, args.concurrency, f"warm-{workers}")
            label = f"({'b' if workers == 1 else 'c'}) ray, {workers} worker{'s' if workers > 1 else ''}"
            results[label] = await timed(rows, src, work, args.concurrency, f"ray{workers}")
        finally:
            await rows.close()
        print(f"ray, {workers} worker(s): started in {started:.1f} s (paid once per batch)", flush=True)
    await local_figure(settings, src, warm, work, args.concurrency, results, "(a) local executor, last")
    base = min(v for k, v in results.items() if k.startswith("(a)"))
    print(f"\n{args.rows} rows, fake backend, concurrency {args.concurrency}, local Ray cluster of 2 CPUs")
    for label, elapsed in results.items():
        print(f"{label:<22} {args.rows / elapsed:8.1f} rows/s  {elapsed / args.rows * 1000:6.2f} ms/row  "
              f"{elapsed / base:5.2f}x the faster local time")  # fmt: skip


def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--rows", type=int, default=2000, help="rows [2000]")
    parser.add_argument("--concurrency", type=int, default=32, help="rows in flight [32]")
    args = parser.parse_args()
    cluster = RayCluster(cpus=2)
    try:
        with tempfile.TemporaryDirectory(prefix="llmdock-ray-bench-") as tmp:
            asyncio.run(figures(args, Path(tmp), cluster))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
