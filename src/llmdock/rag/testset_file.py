"""A RAG test set on disk: JSON lines an evaluation suite can read as they are, plus where each answer is.

Each row is an evaluation case (``llmdock.evaluate.suite``'s fields) whose ``metadata`` says what the
retriever should find::

    {"id": "pydocs-0001", "input": "How do I …?", "expected": "Use json.loads …",
     "context": "<the source chunks' text>",
     "metadata": {"kind": "simple", "source_chunks": [812], "sources": [".../json.html"],
                  "synthetic": true, "kb": "pydocs", "kb_version": 7, "generator": "smollm2", "seed": 0}}

A conversational row has ``messages`` (the earlier turn, then the follow-up) instead of ``input``. A row
written by hand may leave ``source_chunks`` empty: its question is then one the knowledge base is not
expected to answer, and only its answer is scored. Every problem is reported as ``file:line: field: message``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from llmdock.errors import ConfigError
from llmdock.evaluate.case import Case
from llmdock.evaluate.suite import load_cases

KINDS = ("simple", "complex", "distracting", "situational", "double", "conversational")


@dataclass(frozen=True)
class RagQuestion:
    """One question of a test set with what the retriever should find for it."""

    case: Case
    kind: str
    source_chunks: tuple[int, ...]
    synthetic: bool

    @property
    def question(self) -> str:
        """The text the retriever is asked: the input, or the conversation's last user turn."""
        if self.case.input is not None:
            return self.case.input
        users = [m for m in self.case.messages or [] if m.get("role") == "user"]
        return str(users[-1].get("content", "")) if users else ""


def load_testset(path: Path) -> list[RagQuestion]:
    """Read and check a test set; the first bad row stops it with ``file:line: field: message``."""
    if not path.is_file():
        raise ConfigError(f"no test set at {path}", where="testset")
    cases, _ = load_cases(path, "stop")
    if not cases:
        raise ConfigError("the test set has no rows", where=str(path))
    return [_checked(c) for c in cases]


def _checked(case: Case) -> RagQuestion:
    def bad(field: str, message: str) -> ConfigError:
        return ConfigError(f"{field}: {message}", where=case.where)

    if not case.expected:
        raise bad("expected", "the reference answer is missing")
    meta = case.metadata
    kind = meta.get("kind", "simple")
    if kind not in KINDS:
        raise bad("metadata.kind", f"{kind!r} is not a kind (known: {', '.join(KINDS)})")
    if "source_chunks" not in meta:
        raise bad("metadata.source_chunks", "missing: the chunk ids the answer comes from ([] for none)")
    chunks = meta["source_chunks"]
    if not isinstance(chunks, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in chunks
    ):
        raise bad("metadata.source_chunks", "must be a list of chunk ids (integers)")
    synthetic = meta.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise bad("metadata.synthetic", "must be true or false")
    if case.messages is not None and not any(m.get("role") == "user" for m in case.messages):
        raise bad("messages", "a conversation needs a user turn to ask the retriever")
    return RagQuestion(case, kind, tuple(chunks), synthetic)


def row(
    row_id: str,
    question: str | list[dict[str, Any]],
    answer: str,
    context: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """A test-set row: ``question`` is the input text, or a conversation ending in the user's turn."""
    ask: dict[str, Any] = {"input": question} if isinstance(question, str) else {"messages": question}
    return {"id": row_id, **ask, "expected": answer, "context": context, "metadata": metadata}


def write_testset(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write the rows as JSON lines (replacing the file whole, so a reader never sees half of it)."""
    partial = path.with_name(path.name + ".partial")
    n = 0
    with partial.open("wb") as fh:
        for r in rows:
            fh.write(orjson.dumps(r) + b"\n")
            n += 1
    partial.replace(path)
    return n
