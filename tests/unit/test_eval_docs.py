"""docs/evaluation.md lists every built-in metric, so the reference cannot fall behind the plugins."""

from __future__ import annotations

from pathlib import Path

from llmdock.plugins import load_plugins

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


def test_every_registered_metric_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in load_plugins(entry_points=False).metrics if f"| `{name}` |" not in text]
    assert missing == []
