"""Test sets as versioned datasets: ``kb testset`` saves its rows with ``llmdock.datasets``, ``kb evaluate``
reads them back by name.

A test set is a dataset version like any other (``llmdock datasets list / show / diff / export`` read it): its
rows are stored once by content hash (the same rows saved again are the same version), numbered per name
(``pydocs-testset/2``), and its ``lineage`` says what made it — the knowledge base and its version, the
generator and judge models, the seed and the kinds — so a score can be traced back to the exact questions
and the base they were asked of. ``kb evaluate`` takes a file path or a dataset reference (``NAME``,
``NAME/3``, ``NAME@digest-prefix``); rows read from a version are checked as a file's are, and a bad one is
named ``NAME/3:line: field: message``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmdock.datasets.versions import Datasets
from llmdock.errors import ConfigError, NotFound
from llmdock.rag.testset import REASONS, Outcome
from llmdock.rag.testset_file import RagQuestion, load_testset, write_testset
from llmdock.store.audit import Actor
from llmdock.store.dataset_rows import DatasetVersion


def default_name(kb: str) -> str:
    return f"{kb}-testset"


def lineage_of(
    out: Outcome, kb: str, kb_version: int, generator: str, judge: str, seed: int
) -> dict[str, Any]:
    """What made these rows: enough to make them again (the same seed, base version and models)."""
    kinds = sorted({r["metadata"]["kind"] for r in out.rows})
    return {
        "kind": "kb testset",
        "kb": kb,
        "kb_version": kb_version,
        "generator": generator,
        "judge": judge,
        "seed": seed,
        "kinds": kinds,
    }


def save_testset(
    datasets: Datasets, name: str, out: Outcome, actor: Actor, lineage: dict[str, Any]
) -> tuple[DatasetVersion, bool]:
    """The kept rows as the next version of dataset ``name`` (the same rows as the latest: that version)."""
    report = {
        "kept": len(out.rows),
        "generated": out.generated,
        "chunks_asked": out.candidates,
        "dropped": {why: out.rejected[why] for why in REASONS if out.rejected[why]},
    }
    return datasets.save(
        name,
        out.rows,
        actor,
        lineage=lineage,
        report=report,
        description=f"RAG test set of knowledge base {lineage['kb']} (kb testset)",
    )


@dataclass
class LoadedTestset:
    """A test set read for ``kb evaluate``: its questions, and where they came from."""

    questions: list[RagQuestion]
    path: Path  # the file read (a dataset version's rows are copied to a temporary file first)
    label: str  # the file path, or ``dataset NAME/3 @digest``
    lineage: dict[str, Any] = field(default_factory=dict)
    version: DatasetVersion | None = None


def load(ref: str, datasets: Datasets | None, scratch: Path) -> LoadedTestset:
    """A file if ``ref`` names one, else a dataset version (``NAME``, ``NAME/3``, ``NAME@digest``)."""
    path = Path(ref).expanduser()
    if path.is_file() or datasets is None or path.suffix in (".jsonl", ".csv"):
        return LoadedTestset(load_testset(path), path, str(path))
    try:
        version = datasets.get(ref)
    except NotFound as exc:
        raise NotFound(f"{exc.message}; nor is there a file {str(path)!r}", param="testset") from None
    label = f"{version.name}/{version.version}"
    rows = list(datasets.rows(version))
    copy = scratch / f"{version.name}-{version.version}.jsonl"
    write_testset(copy, rows)
    try:
        questions = load_testset(copy)
    except ConfigError as exc:  # name the version, not the temporary copy
        where = (exc.where or "").replace(str(copy), label)
        raise ConfigError(exc.message, where=where) from None
    lineage = dict(version.lineage or {})
    return LoadedTestset(questions, copy, f"dataset {label} @{version.digest[:12]}", lineage, version)


def scratch_dir(home: Path) -> tempfile.TemporaryDirectory[str]:
    staging = Path(home).expanduser() / "tmp"
    staging.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=staging)


def lineage_warnings(loaded: LoadedTestset, kb: str, kb_version: int) -> Sequence[str]:
    """What the version's lineage says that the reader should know before trusting the scores."""
    made = loaded.lineage
    if made.get("kind") != "kb testset":
        return []
    found = []
    if made.get("kb") not in (None, kb):
        found.append(f"{loaded.label} was generated from knowledge base {made['kb']!r}, not {kb!r}")
    elif isinstance(made.get("kb_version"), int) and made["kb_version"] != kb_version:
        found.append(
            f"{loaded.label} was generated from version {made['kb_version']} of {kb}; it is now at "
            f"version {kb_version} (source chunks may have changed)"
        )
    return found
