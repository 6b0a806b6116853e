"""Importing a file as rows: each row validated, each drop counted by reason, the first few reported in full.

``on_error="stop"`` turns the first bad row into an error naming ``file:line: field``; ``"skip"`` drops it
and goes on. Either way nothing is stored until every row has been read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmdock.datasets.formats import detect_format, read_raw
from llmdock.datasets.rows import Row, RowError, validate
from llmdock.datasets.versions import file_sha256
from llmdock.errors import ValidationError

OnError = Literal["skip", "stop"]
SHOWN_ERRORS = 20


@dataclass
class Report:
    """What a step kept and dropped, and why (the first ``SHOWN_ERRORS`` drops in full)."""

    read: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def drop(self, reason: str, message: str) -> None:
        self.dropped[reason] += 1
        if len(self.errors) < SHOWN_ERRORS:
            self.errors.append(message)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": dict(self.dropped), "errors": self.errors}


def progress(label: str) -> Progress:
    """The bar long dataset work shows on stderr (stdout carries the command's answer)."""
    console = Console(stderr=True)
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        console=console,
        disable=not console.is_terminal,  # no bar lines in logs and pipes
    )


def validated(path: Path, raw: Iterable[tuple[int, Any]], on_error: OnError, report: Report) -> Iterator[Row]:
    for line, value in raw:
        report.read += 1
        try:
            if isinstance(value, RowError):
                raise value
            row = validate(value)
        except RowError as exc:
            where = f"{path}:{line}"
            if on_error == "stop":
                raise ValidationError(exc.message, where=f"{where}: {exc.field}") from None
            report.drop(exc.reason, exc.at(where))
            continue
        report.kept += 1
        yield row


def load_file(
    path: Path, fmt: str = "", on_error: OnError = "skip"
) -> tuple[list[Row], Report, dict[str, Any]]:
    """The file's valid rows, the report, and the source as lineage records it (path, sha256, format)."""
    path = Path(path).expanduser()
    fmt = detect_format(path, fmt)
    report = Report()
    rows: list[Row] = []
    with progress(f"reading {path.name}") as bar:
        task = bar.add_task("read", total=None)
        for row in validated(path, read_raw(path, fmt), on_error, report):
            rows.append(row)
            bar.advance(task)
    source = {"path": str(path.resolve()), "sha256": file_sha256(path), "format": fmt}
    return rows, report, source
