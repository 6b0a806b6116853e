"""``llmdock experiments`` and ``llmdock feedback`` refuse bad input in one line, exit 2, and create nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import run_cli


def test_bad_experiments_and_feedback_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text("name: support\nmessages:\n  - {role: user, content: 'Hi {{ q }}'}\n")
    assert run_cli(tmp_path, "prompts", "push", str(tmp_path / "t.yaml")).returncode == 0
    cases = {
        ("--weights", "50,40"): "weights '50,40' sum to 90; they must be positive and sum to 100",
        ("--weights", "50,50", "--variant", "c=prompt:support@1"): "2 weights for 3 variants",
        ("--start", "soon"): "start 'soon': give an ISO 8601 time",
        ("--sticky", "cookie"): "sticky 'cookie': one of user, session, key",
    }
    for extra, message in cases.items():
        out = run_cli(
            tmp_path, "experiments", "create", "x", "--variant", "a=prompt:support@1",
            "--variant", "b=prompt:support@1", *extra,
        )  # fmt: skip
        assert out.returncode == 2, out.stdout
        assert out.stderr.startswith("llmdock: error: ")
        assert message in out.stderr
        assert "Traceback" not in out.stderr
    unknown = run_cli(tmp_path, "experiments", "create", "x", "--variant", "a=prompt:support@1",
                      "--variant", "b=prompt:support@2")  # fmt: skip
    assert "variant 'b': prompt 'support' has no version 2" in unknown.stderr
    assert json.loads(run_cli(tmp_path, "experiments", "list", "--json").stdout) == []
    rating = run_cli(tmp_path, "feedback", "add", "abc", "--rating", "6")
    assert rating.stderr.strip() == "llmdock: error: rating: Input should be less than or equal to 5"
    trace = run_cli(tmp_path, "feedback", "add", "abc", "--thumbs", "up")
    assert trace.stderr.strip() == "llmdock: error: no trace with id 'abc'"
