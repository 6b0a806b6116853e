"""The README's first chat example is a real answer: ``llmdock chat`` on the default model (its shipped sampling
defaults, no flags) prints exactly what the README says it prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE = re.compile(r'^llmdock chat "([^"]+)"\s+# → "([^"]+)"', re.MULTILINE)


@pytest.mark.model
def test_the_readme_chat_example_prints_the_answer_the_readme_shows(tmp_path: Path) -> None:
    found = EXAMPLE.search(README.read_text(encoding="utf-8"))
    assert found, 'README.md has no `llmdock chat "question"   # → "answer"` line'
    question, answer = found.groups()
    done = run_cli(tmp_path, "chat", question)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == answer
