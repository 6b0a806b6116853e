"""Training examples: dataset rows rendered with the model's chat template, the loss on assistant tokens only.

Rows come from a dataset version (``llmdock datasets``: the rows of its train split when it has one) or a
chat JSONL file, validated row by row as ``llmdock datasets import`` does (the first bad row stops the run
with ``file:line: field``). Each row is rendered once with the tokenizer's own chat template; the characters
each assistant message adds (its content and the end-of-turn marker, so the model learns to stop) are found by
rendering the conversation up to it with and without that message, and a token is trained on when it starts
inside one of those spans. Everything else, the system prompt, the user turns, the template's role headers,
gets the label -100 and adds no loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmdock.config import Settings
from llmdock.datasets.rows import Row
from llmdock.errors import ConfigError, LlmdockError

IGNORE = -100


@dataclass(frozen=True, slots=True)
class TrainingRows:
    rows: list[Row]
    lineage: dict[str, Any]  # dataset (ref or path) and its digest


def load_rows(spec: str, split: str, settings: Settings, *, relative_to: Path, where: str) -> TrainingRows:
    """The rows to train on: ``NAME``, ``NAME/3``, ``NAME@digest`` or a ``.jsonl`` path."""
    if spec.endswith(".jsonl"):
        return _from_file((relative_to / spec).expanduser(), split, where)
    from llmdock.datasets.versions import Datasets
    from llmdock.store import Store

    store = Store(settings.resolved_database_url())
    try:
        datasets = Datasets(store, settings.home)
        try:
            version = datasets.get(spec)
            rows = list(datasets.rows(version))
        except LlmdockError as exc:
            raise ConfigError(f"unknown dataset version {spec!r}: {exc.message}", where=where) from None
    finally:
        store.close()
    ref = f"{version.name}/{version.version}"
    return TrainingRows(
        _split(rows, split, ref, where), {"dataset": ref, "dataset_version": f"{ref}@{version.digest}"}
    )


def _from_file(path: Path, split: str, where: str) -> TrainingRows:
    from llmdock.datasets.importing import load_file

    if not path.exists():
        raise ConfigError(f"no dataset file {str(path)!r}", where=where)
    rows, _report, source = load_file(path, "jsonl", on_error="stop")
    return TrainingRows(
        _split(rows, split, str(path), where),
        {"dataset": source["path"], "dataset_version": f"sha256:{source['sha256']}"},
    )


def _split(rows: list[Row], split: str, name: str, where: str) -> list[Row]:
    if not any("split" in r.get("meta", {}) for r in rows):
        chosen = rows
    else:
        chosen = [r for r in rows if r.get("meta", {}).get("split") == split]
    if not chosen:
        raise ConfigError(f"{name} has no rows in split {split!r}", where=where)
    return chosen


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the assistant messages add to it."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(upto) and len(upto) > len(before)):
            raise ConfigError(
                "the base model's chat template renders a conversation differently from its beginning, "
                "so the assistant tokens cannot be found"
            )
        spans.append((len(before), len(upto)))
    return text, spans


def encode(tokenizer: Any, row: Row, max_length: int) -> dict[str, list[int]]:
    """Token ids and labels for one chat row: -100 on every token outside an assistant span."""
    messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    text, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_length
    )
    labels = [
        tok if any(start <= begin < end for start, end in spans) else IGNORE
        for tok, (begin, _stop) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]
    return {
        "input_ids": list(enc["input_ids"]),
        "attention_mask": list(enc["attention_mask"]),
        "labels": labels,
    }


def encode_all(tokenizer: Any, rows: list[Row], max_length: int) -> list[dict[str, list[int]]]:
    """Every row encoded; rows cut so short that no assistant token is left are left out."""
    examples = [encode(tokenizer, row, max_length) for row in rows]
    kept = [e for e in examples if any(label != IGNORE for label in e["labels"])]
    if not kept:
        raise ConfigError(
            f"no row keeps an assistant token within training.max_length={max_length}: raise it",
            where="training.max_length",
        )
    return kept
