"""Guard quality and latency: precision, recall and F1 per detector on the held-out test split, beside peer
detectors from PyPI on the same rows in the same run, and the input chain's latency on 1,000-character prompts.

    .venv/bin/python bench/guard_quality.py               # --peer-venv /tmp/venv_guard_peer --reps 300

Data: ``bench/data/guard_test.jsonl.gz`` (sources and licenses in bench/data/README.md; never tuned on).
Peers run in their own venv, created on first use (torch's CPU build from this machine's disk first, so
nothing pulls a CUDA build):

- ``prompt-guardrail`` 1.0.1 (guardify: TF-IDF + logistic regression shipped in the package) for injection;
  llm-guard's ``PromptInjection`` needs a model from the Hugging Face hub, which is unreachable here;
- ``alt-profanity-check`` 1.9.1 on its own for toxicity (llm-guard's ``Toxicity`` needs the hub too);
- llm-guard 0.3.16's ``NoRefusalLight`` (substring rules) for refusal;
- latency: llm-guard's offline input scanners (``InvisibleText`` + ``Secrets``) plus guardify, per prompt.

Then the source-held-out protocol of ``guard_heldout.py`` (leave-one-source-family-out over the labelled pool,
and sources never trained on; ``--no-held-out`` skips it, it retrains the classifiers once per family).

Targets (issue 6): injection/jailbreak recall >= 90 % at a false-positive rate <= 5 % on ordinary prompts;
input chain P50 <= 10 ms on a 1,000-character prompt (timed by guard_latency.py, per detector too; `--baseline
OTHER/src` times another checkout beside this one). Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from guard_timing import console, ensure_models, options, test_rows, thousand_char_prompts, time_chain
from harness import pct
from rich.table import Table

PEERS = ["llm-guard==0.3.16", "prompt-guardrail==1.0.1", "alt-profanity-check==1.9.1", "scikit-learn==1.9.1"]
ORDINARY = {"s-labs", "neuralchemy", "openai-evals", "spikee-fp"}  # where label-0 rows are ordinary prompts

PEER_SCRIPT = r"""
import json, logging, os, sys, time, statistics
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
rows = [json.loads(l) for l in open(sys.argv[1])]
prompts = [json.loads(l) for l in open(sys.argv[2])]
import guardify
from profanity_check import predict_prob
from llm_guard.output_scanners import NoRefusalLight
from llm_guard.input_scanners import InvisibleText, Secrets
out = {}
inj = [r for r in rows if r["task"] == "injection"]
out["guardify"] = [guardify.detect(r["text"])["score"] if guardify.detect(r["text"])["label"] == "injection"
                   else 1 - guardify.detect(r["text"])["score"] for r in inj]
tox = [r for r in rows if r["task"] == "toxicity"]
out["alt-profanity-check"] = [float(p) for p in predict_prob([r["text"] for r in tox])]
ref = [r for r in rows if r["task"] == "refusal"]
scanner = NoRefusalLight()
out["llm-guard NoRefusalLight"] = [0.0 if scanner.scan("", r["text"])[1] else 1.0 for r in ref]
chain = [InvisibleText(), Secrets(redact_mode="all")]
def run(p):
    for s in chain:
        s.scan(p)
    guardify.detect(p)
for p in prompts[:3]:
    run(p)
times, cpu = [], []
for i in range(int(sys.argv[3])):
    p = prompts[i % len(prompts)]
    t0, c0 = time.perf_counter(), time.thread_time()
    run(p)
    times.append((time.perf_counter() - t0) * 1000); cpu.append((time.thread_time() - c0) * 1000)
out["latency"] = [times, cpu]
json.dump(out, sys.stdout)
"""


def ensure_peer_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists():
        return python
    console.print(f"creating the peers' venv {venv} ({', '.join(PEERS)}; a few minutes, once)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)  # the CPU build on this machine's disk
    subprocess.run([*pip, *PEERS], check=True)
    return python


def prf(scores: list[float], labels: list[int], threshold: float = 0.5) -> dict[str, float]:
    tp = sum(s >= threshold and y == 1 for s, y in zip(scores, labels, strict=True))
    fp = sum(s >= threshold and y == 0 for s, y in zip(scores, labels, strict=True))
    positives = sum(labels)
    negatives = len(labels) - positives
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fp / negatives if negatives else 0.0}


async def llmdock_scores(rows: list[dict[str, Any]], model_dir: Path) -> tuple[dict[str, list[Any]], Any]:
    from llmdock.config import Settings
    from llmdock.guards.base import GuardText
    from llmdock.guards.policy import DetectorEnv, build_policies
    from llmdock.plugins import load_plugins

    settings = Settings(
        guards={
            "model_dir": str(model_dir),
            "input": {"injection": {}, "toxicity": {}},
            "output": {"refusal": {}},
        }
    )
    policies = build_policies(settings, load_plugins().detectors, DetectorEnv(model_dir))
    detectors = {"injection": policies.base["input"]["injection"].detector,
                 "toxicity": policies.base["input"]["toxicity"].detector,
                 "refusal": policies.base["output"]["refusal"].detector}  # fmt: skip
    verdicts: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        role, direction = ("answer", "output") if r["task"] == "refusal" else ("user", "input")
        verdicts[r["task"]].append(await detectors[r["task"]].detect(GuardText(r["text"], role, direction)))
    return verdicts, settings


def pii_section(rows: list[dict[str, Any]]) -> None:
    """The pii detector against Presidio's default pipeline on pii_redaction.py's Faker-labelled set."""
    from pii_cases import PresidioDefault, labelled_set

    from llmdock.config import DEFAULT_PII_ENTITIES
    from llmdock.guards.base import GuardText
    from llmdock.guards.detectors.pii import PiiDetector, PiiParams
    from llmdock.guards.policy import DetectorEnv

    cases, clean = labelled_set()
    wanted = {e: v for e, v in cases.items() if e in DEFAULT_PII_ENTITIES and e != "PHONE_NUMBER"}
    wanted["PHONE_NUMBER (valid)"] = cases["PHONE_NUMBER (valid)"]
    detector = PiiDetector(PiiParams(), DetectorEnv(Path(tempfile.gettempdir())))
    presidio = PresidioDefault()

    def ours(text: str) -> list[tuple[int, int]]:
        verdict = asyncio.run(detector.detect(GuardText(text, "user", "input")))
        return [(f.start, f.end) for f in verdict.findings] if verdict.score >= 0.5 else []

    def theirs(text: str) -> list[tuple[int, int]]:
        return [
            (r.start, r.end) for r in presidio.analyzer.analyze(text=text, language="en") if r.score >= 0.5
        ]

    table = Table(
        "entity",
        "values",
        "llmdock caught",
        "Presidio default caught",
        title="PII: values fully inside a finding (Faker-labelled set, seed 7)",
    )
    totals = {
        "llmdock": [0, 0, 0, 0],
        "Presidio default": [0, 0, 0, 0],
    }  # tp rows, caught values, flagged clean, values
    for entity, items in wanted.items():
        caught = {}
        for who, find in (("llmdock", ours), ("Presidio default", theirs)):
            n = 0
            for text, value in items:
                start = text.find(value)
                spans = find(text)
                totals[who][0] += bool(spans)
                n += any(a <= start and start + len(value) <= b for a, b in spans)
            caught[who] = n
            totals[who][1] += n
            totals[who][3] += len(items)
        table.add_row(entity, str(len(items)), str(caught["llmdock"]), str(caught["Presidio default"]))
    for who, find in (("llmdock", ours), ("Presidio default", theirs)):
        totals[who][2] = sum(bool(find(t)) for t in clean)
    console.print(table)
    summary = Table(
        "who",
        "value recall",
        "row precision",
        "row recall",
        "row F1",
        "clean sentences flagged",
        "ordinary prompts flagged",
        title="PII: target value recall >= 95 %",
    )
    ordinary = [
        r["text"] for r in rows if r["task"] == "injection" and r["label"] == 0 and r["source"] in ORDINARY
    ][:500]
    for who, find in (("llmdock", ours), ("Presidio default", theirs)):
        tp, got, fp, total = totals[who]
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / total
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        flagged = sum(bool(find(t)) for t in ordinary)
        summary.add_row(
            who,
            f"{got / total:.3f} of {total}" + (" (met)" if who == "llmdock" and got / total >= 0.95 else ""),
            f"{precision:.3f}",
            f"{recall:.3f}",
            f"{f1:.3f}",
            f"{fp}/{len(clean)}",
            f"{flagged}/{len(ordinary)}",
        )
    console.print(summary)


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument(
        "--peer-venv", type=Path, default=Path(os.environ.get("GUARD_PEER_VENV", "/tmp/venv_guard_peer"))
    )
    parser.add_argument("--no-held-out", action="store_true", help="skip guard_heldout.py's protocol")
    args = parser.parse_args()
    rows = test_rows()
    prompts = thousand_char_prompts(rows)
    with console.status("training / loading llmdock's classifiers"):
        ensure_models(args.model_dir)
    python = ensure_peer_venv(args.peer_venv)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (Path(tmp) / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
        with console.status("running the peers on the same rows"):
            proc = subprocess.run(
                [str(python), "-c", PEER_SCRIPT, f"{tmp}/rows.jsonl", f"{tmp}/prompts.jsonl", str(args.reps)],
                capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )  # fmt: skip
        if proc.returncode != 0:
            sys.exit(f"the peers failed:\n{proc.stderr[-3000:]}")
        peer = json.loads(proc.stdout)
    with console.status("scoring the test split with llmdock's detectors"):
        verdicts, _ = asyncio.run(llmdock_scores(rows, args.model_dir))

    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    peers_for = {
        "injection": "guardify",
        "toxicity": "alt-profanity-check",
        "refusal": "llm-guard NoRefusalLight",
    }
    table = Table(
        "detector",
        "rows (pos/neg)",
        "who",
        "precision",
        "recall",
        "F1",
        "FPR",
        title="quality on the held-out test split (threshold 0.5)",
    )
    for task in ("injection", "toxicity", "refusal"):
        labels = [r["label"] for r in by_task[task]]
        counts = f"{sum(labels)}/{len(labels) - sum(labels)}"
        for who, scores in (
            ("llmdock", [v.score for v in verdicts[task]]),
            (peers_for[task], peer[peers_for[task]]),
        ):
            m = prf(scores, labels)
            table.add_row(task, counts, who, *(f"{m[k]:.3f}" for k in ("precision", "recall", "f1", "fpr")))
    console.print(table)

    inj = by_task["injection"]
    ordinary = [i for i, r in enumerate(inj) if r["label"] == 0 and r["source"] in ORDINARY]
    attacks = [i for i, r in enumerate(inj) if r["label"] == 1]
    target = Table(
        "who",
        "recall (attacks)",
        "FPR (ordinary prompts)",
        "target met",
        title="injection target: recall >= 90 % at FPR <= 5 %",
    )
    for who, scores in (
        ("llmdock", [v.score for v in verdicts["injection"]]),
        ("guardify", peer["guardify"]),
    ):
        recall = sum(scores[i] >= 0.5 for i in attacks) / len(attacks)
        fpr = sum(scores[i] >= 0.5 for i in ordinary) / len(ordinary)
        target.add_row(
            who,
            f"{recall:.3f} of {len(attacks)}",
            f"{fpr:.3f} of {len(ordinary)}",
            "yes" if recall >= 0.9 and fpr <= 0.05 else "NO",
        )
    console.print(target)

    sources = Table(
        "source", "label", "rows", "llmdock flagged", "guardify flagged", title="injection by source"
    )
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, r in enumerate(inj):
        groups[(r["source"], r["label"])].append(i)
    for (source, label), idx in sorted(groups.items()):
        mine = sum(verdicts["injection"][i].score >= 0.5 for i in idx) / len(idx)
        theirs = sum(peer["guardify"][i] >= 0.5 for i in idx) / len(idx)
        sources.add_row(source, str(label), str(len(idx)), f"{mine:.3f}", f"{theirs:.3f}")
    console.print(sources)
    layers = Counter(
        verdicts["injection"][i].layer.split("+")[0].split(":")[0] + ("+normalize" if "normalize" in verdicts["injection"][i].layer else "")
        for i in attacks if verdicts["injection"][i].score >= 0.5
    )  # fmt: skip
    console.print(
        "layers that fired on caught attacks: " + ", ".join(f"{k} {v}" for k, v in layers.most_common())
    )

    time_chain(args, prompts)
    wall, cpu = peer["latency"]
    console.print(
        f"peer on the same prompts, llm-guard InvisibleText + Secrets then guardify: wall P50 / P99 "
        f"{pct(wall, 50):.2f} / {pct(wall, 99):.2f} ms, CPU P50 / P99 {pct(cpu, 50):.2f} / {pct(cpu, 99):.2f} ms"
    )
    with console.status("PII: llmdock's pii detector and Presidio's default on the same labelled set"):
        pii_section(rows)
    console.print(
        "Secrets, leakage, URLs and grounding have no labelled third-party set in a package; their unit tests cover them."
    )
    if not args.no_held_out:
        import guard_heldout

        guard_heldout.main(["--peer-venv", str(args.peer_venv)])


if __name__ == "__main__":
    main()
