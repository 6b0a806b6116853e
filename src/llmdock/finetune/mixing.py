"""The examples of a run: each source loaded and encoded for its task, then mixed by weight.

A source is a dataset version or a file with a weight and a task (``sft``: chat rows, the loss on assistant
tokens; ``pretrain``: raw text, the loss on every token, packed into ``max_length`` blocks). One source
trains on its examples as they are. Several (a ``mixture:``, or new data with ``replay:``) are mixed: a run
sees ``max_steps * batch_size * grad_accum`` examples, each source's count in proportion to its weight, drawn
from a seeded shuffle of its examples (cycled when it has fewer), then shuffled together.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmdock.config import Settings
from llmdock.errors import ConfigError
from llmdock.finetune.config import FinetuneConfig, Where
from llmdock.finetune.data import IGNORE, TrainingRows, encode_all, load_rows
from llmdock.finetune.strategy import Task, sources

Example = dict[str, list[int]]


@dataclass(frozen=True, slots=True)
class Source:
    spec: str
    weight: float
    task: Task
    data: TrainingRows


def load_sources(
    config: FinetuneConfig, settings: Settings, *, split: str, relative_to: Path, where: Where
) -> list[Source]:
    """Every source's rows (checked now, before a model loads)."""
    found = []
    for i, (spec, weight, task) in enumerate(sources(config)):
        if config.mixture:
            at = where(("mixture", i, "dataset"))
        else:
            at = where(("replay", "dataset") if i else ("dataset",))
        if task == "pretrain" and spec.endswith((".txt", ".jsonl")):
            data = _texts_from_file((relative_to / spec).expanduser(), at)
        else:
            data = load_rows(spec, split, settings, relative_to=relative_to, where=at)
        found.append(Source(spec, weight, task, data))
    return found


def lineage(found: list[Source]) -> dict[str, Any]:
    """``dataset`` and ``dataset_version`` as before for one source; joined, with each weight, for several."""
    if len(found) == 1:
        return dict(found[0].data.lineage)
    return {
        "dataset": " + ".join(s.data.lineage["dataset"] for s in found),
        "dataset_version": " + ".join(s.data.lineage["dataset_version"] for s in found),
        "mixture": [
            {"dataset_version": s.data.lineage["dataset_version"], "weight": s.weight, "task": s.task}
            for s in found
        ],
    }


def examples(config: FinetuneConfig, tokenizer: Any, found: list[Source]) -> list[Example]:
    """The run's training examples: one source as it is, several mixed by weight."""
    t = config.training
    parts = [encode_source(tokenizer, s, t.max_length) for s in found]
    if len(parts) == 1:
        return parts[0]
    return mix(parts, [s.weight for s in found], t.max_steps * t.batch_size * t.grad_accum, t.seed)


def encode_source(tokenizer: Any, source: Source, max_length: int) -> list[Example]:
    if source.task == "sft":
        return encode_all(tokenizer, source.data.rows, max_length)
    return encode_text(tokenizer, [_text_of(row) for row in source.data.rows], max_length)


def encode_text(tokenizer: Any, texts: list[str], max_length: int) -> list[Example]:
    """Raw text for continued pre-training: each text and an end-of-text token, packed into blocks of
    ``max_length`` tokens; every token is trained on."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += [*tokenizer(text, add_special_tokens=False)["input_ids"], eos]
    blocks = [ids[i : i + max_length] for i in range(0, len(ids), max_length)]
    return [{"input_ids": b, "attention_mask": [1] * len(b), "labels": list(b)} for b in blocks if len(b) > 1]


def mix(parts: list[list[Example]], weights: list[float], total: int, seed: int) -> list[Example]:
    """``total`` examples, each part's count in proportion to its weight (at least one each)."""
    rng = random.Random(seed)
    counts = [max(1, round(total * w / sum(weights))) for w in weights]
    mixed: list[Example] = []
    for part, count in zip(parts, counts, strict=True):
        order: list[Example] = []
        while len(order) < count:
            cycle = list(part)
            rng.shuffle(cycle)
            order += cycle
        mixed += order[:count]
    rng.shuffle(mixed)
    return mixed


def trained_share(example: Example) -> float:
    """The share of an example's tokens that carry loss (1.0 for raw text)."""
    return sum(label != IGNORE for label in example["labels"]) / max(1, len(example["labels"]))


def _text_of(row: dict[str, Any]) -> str:
    if "text" in row:
        return str(row["text"])
    return "\n\n".join(str(m["content"]) for m in row["messages"])


def _texts_from_file(path: Path, where: str) -> TrainingRows:
    """A ``.txt`` file (paragraphs apart by a blank line) or a JSONL file of ``{"text": …}``."""
    if not path.exists():
        raise ConfigError(f"no text file {str(path)!r}", where=where)
    lines = path.read_text(encoding="utf-8").splitlines()
    rows: list[dict[str, Any]] = []
    if path.suffix == ".txt":
        rows = [{"text": p.strip()} for p in "\n".join(lines).split("\n\n") if p.strip()]
    for number, line in enumerate(lines if path.suffix == ".jsonl" else [], 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line).get("text")
        except (ValueError, AttributeError):
            text = None
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                'a raw-text row is {"text": "…"} with some text', where=f"{path}:{number}: text"
            )
        rows.append({"text": text})
    if not rows:
        raise ConfigError(f"{path} holds no text", where=where)
    return TrainingRows(
        rows,
        {"dataset": str(path), "dataset_version": f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"},
    )
