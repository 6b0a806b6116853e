"""scripts/clones.py, the copy check `make lint` runs: it finds renamed copies and passes distinct code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ORIGINAL = """
def total(items, limit):
    acc = 0
    for item in items:
        if item > limit:
            acc += item * 2
        else:
            acc -= penalty(item, limit)
    return acc
"""
RENAMED = """
def score(rows, cap):
    result = 0
    for row in rows:
        if row > cap:
            result += row * 3
        else:
            result -= cost(row, cap)
    return result
"""
DIFFERENT = """
def score(rows, cap):
    with open(cap) as fh:
        data = fh.read().split()
    while data:
        rows.append(data.pop())
    try:
        return max(rows)
    except ValueError:
        return None
"""


def run(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "clones.py"), str(tmp_path)], capture_output=True, text=True
    )


def test_a_copy_with_other_names_and_numbers_is_reported(tmp_path: Path) -> None:
    done = run(tmp_path, {"a.py": ORIGINAL, "b.py": RENAMED})
    assert done.returncode == 1
    assert "a.py:3-9 ~" in done.stdout
    assert "b.py:3-9 (same shape)" in done.stdout


def test_a_copy_inside_one_file_is_reported(tmp_path: Path) -> None:
    done = run(tmp_path, {"a.py": ORIGINAL + "\n" + RENAMED})
    assert done.returncode == 1, done.stdout


def test_different_code_passes(tmp_path: Path) -> None:
    done = run(tmp_path, {"a.py": ORIGINAL, "b.py": DIFFERENT})
    assert done.returncode == 0, done.stdout
