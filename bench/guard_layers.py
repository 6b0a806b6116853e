"""The injection classifier layers of bench/guard_heldout.py: each text embedded (or run through the frozen
layers) once, in batches, behind a progress bar, and reused by every fold.

``prepare`` returns the trainer a fold calls (``trainer(task, path)``) for a ``guards.input.injection.model``
value, after computing what every fold will ask of the encoder: the training texts of the pool and of the
shipped data, and (for the embedding layers) each scored text and its windows.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

from guard_timing import console
from rich.progress import Progress

from llmdock.guards.base import GuardText
from llmdock.guards.normalize import normalize
from llmdock.guards.training import data_path, train, training_rows

WINDOW_CHARS = 600  # InjectionParams().window_chars
EMBEDDINGS: dict[str, Any] = {}  # text digest -> MiniLM embedding, shared by the layers of one run
ONNX = Path(tempfile.gettempdir()) / "llmdock-guard-heldout-onnx"  # the encoder's export, kept between runs


def training_views(task: str, pool: list[dict[str, Any]], per_source: int) -> list[str]:
    """The normalised texts a fold or the shipped model trains on (the pool's and a sample of the shipped data)."""
    from llmdock.guards.embedding import sample_rows

    shipped = sample_rows(training_rows(data_path(), task), per_source)
    return list(dict.fromkeys(normalize(r["text"]).text for r in [*pool, *shipped] if r["task"] == task))


def scored_spans(rows: list[dict[str, Any]]) -> list[str]:
    """Each row's normalised text and the windows the injection detector also scores."""
    from llmdock.guards.detectors.injection import window_spans

    out = []
    for r in rows:
        view = GuardText(r["text"], r.get("role", "user"), "input").ngrams().text
        out += [view[start:end] for start, end in window_spans(len(view), WINDOW_CHARS)]
    return list(dict.fromkeys(out))


def in_batches(label: str, texts: list[str], run: Any, size: int = 128) -> None:
    with Progress(console=console) as progress:
        bar = progress.add_task(label, total=len(texts))
        for start in range(0, len(texts), size):
            run(texts[start : start + size])
            progress.advance(bar, len(texts[start : start + size]))


def prepare(
    model: str,
    task: str,
    home: Path,
    everything: list[dict[str, Any]],
    scored: list[dict[str, Any]],
    cap: int,
) -> Any:
    """The fold trainer for ``model``. The heavier layers' shipped model is trained into ``home`` first (where
    the detector finds it) from the same memo, on at most ``cap`` rows per source of the shipped data (as the
    folds' pool is capped; the product trains on more: ``ROWS_PER_SOURCE`` of its module)."""
    if model == "ngram":
        return train
    cap = cap or 10**9
    if model == "finetuned":
        from llmdock.guards import finetuned

        trainer = finetuned.Trainer()
        texts = training_views(task, everything, cap)
        in_batches(f"{task}: MiniLM's frozen layers over {len(texts)} training texts", texts, trainer.lower)
        target = finetuned.model_dir(home, task, data_path(), finetuned.encoder_dir())
        with console.status(f"{task}: fine-tuning the shipped classifier"):
            finetuned.train(task, data_path(), target, trainer, per_source=cap)
        folds = itertools.count()
        return lambda task, path: finetuned.train(task, path, home / "folds" / f"fold-{next(folds)}", trainer)
    from llmdock.guards import embedding

    ONNX.mkdir(exist_ok=True)
    (home / "onnx").symlink_to(ONNX)
    encode = embedding.shared_encoder(home)
    encode.memo = EMBEDDINGS
    texts = training_views(task, everything, cap) + scored_spans(scored)
    in_batches(f"{task}: MiniLM embeddings of {len(texts)} texts and windows", texts, encode)
    with console.status(f"{task}: training the shipped classifier ({model})"):
        shipped = embedding.train(task, data_path(), encode, model, per_source=cap)
        embedding.save(shipped, embedding.model_file(home, task, model, data_path()))
    return lambda task, path: embedding.train(task, path, encode, model)
