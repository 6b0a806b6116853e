"""docs/structured.md's table of what the grammar enforces and what validation does agrees with the code."""

from __future__ import annotations

import re
from pathlib import Path

from llmdock.structured.numeric import BOUND_KEYWORDS
from llmdock.structured.schemas import GRAMMAR_FORMATS, VALIDATION_ONLY

ROOT = Path(__file__).resolve().parents[2]


def _rows() -> list[tuple[set[str], str, str]]:
    """(keywords named in the first column, the 'enforced by' column, the tests column) of each table row."""
    rows = []
    for line in (ROOT / "docs" / "structured.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("keyword", "---"):
            continue
        names = set(re.findall(r"`([^`]+)`", cells[0]))
        rows.append((names, cells[1], cells[3]))
    return rows


def test_every_keyword_only_validation_enforces_is_in_a_validation_row() -> None:
    validated = set().union(*(names for names, by, _ in _rows() if by == "validation"))
    assert VALIDATION_ONLY - validated == set()


def test_bounds_and_grammar_formats_are_in_grammar_rows() -> None:
    by_grammar = [(names, by) for names, by, _ in _rows() if by.startswith("grammar")]
    named = set().union(*(names for names, _ in by_grammar))
    assert set(BOUND_KEYWORDS) <= named
    formats = {f for names, _ in by_grammar for cell in names for f in re.split(r"[:, ]+", cell)}
    assert {f for f in GRAMMAR_FORMATS if not f[-1].isdigit()} <= formats | {"uuid"}


def test_every_test_the_table_names_exists() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for _, _, tests in _rows():
        for name in re.findall(r"`([^`]+)`", tests):
            if name.startswith("tests/"):
                assert (ROOT / name).exists(), name
            else:
                assert f"def {name}(" in sources, name
