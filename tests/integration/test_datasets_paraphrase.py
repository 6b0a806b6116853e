"""Paraphrases by the real embedded model, through the served pipeline, marked synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmdock.cli.main import app

pytestmark = pytest.mark.model


def test_paraphrases_come_from_the_model_and_are_marked_synthetic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))
    src = tmp_path / "q.jsonl"
    questions = ["What is the capital city of France?", "How many legs does a spider have?"]
    src.write_text("".join(json.dumps({"prompt": q, "completion": "An answer."}) + "\n" for q in questions))
    runner = CliRunner()
    assert runner.invoke(app, ["datasets", "import", str(src), "--name", "q"]).exit_code == 0
    out = runner.invoke(
        app, ["datasets", "clean", "q", "--step", "paraphrase max_tokens=32 seed=1", "--json"]
    )
    assert out.exit_code == 0, out.output
    version = json.loads(out.output)
    [step] = version["steps"]  # this run's steps (the version is the old one when nothing was added)
    figures = step["figures"]
    assert figures["added"] + sum(figures["rejected"].values()) == len(questions)  # every row was asked
    assert version["rows"] == len(questions) + figures["added"]
    rows = json.loads(runner.invoke(app, ["datasets", "show", "q", "--head", "9", "--json"]).output)["head"]
    for row in rows[len(questions) :]:
        assert row["meta"]["synthetic"] is True
        assert row["meta"]["augmented"]["kind"] == "paraphrase"
        assert row["meta"]["augmented"]["model"] == "smollm2"
        assert row["messages"][0]["content"] not in questions
    traces = runner.invoke(app, ["traces", "list", "--limit", "5"])
    assert traces.output.count("smollm2") >= len(questions)  # asked through the pipeline: traced
