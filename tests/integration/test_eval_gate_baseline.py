"""``llmdock eval gate --baseline NAME@label`` as a user runs it: the gate finds the newest run of the suite that
the labelled prompt version answered, and says what to run when there is none."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import run_cli
from tests.integration.test_eval_cli import FAKE_CONFIG


def test_the_gate_compares_with_the_newest_run_of_the_prompt_version_a_label_names(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(FAKE_CONFIG)
    template = tmp_path / "support.yaml"
    template.write_text("name: support\nmessages:\n  - {role: user, content: 'question about {{ topic }}'}\n")
    assert run_cli(tmp_path, "prompts", "push", str(template), "--label", "production").returncode == 0
    rows = [{"id": f"q{i}", "vars": {"topic": f"topic {i}"}, "expected": "question"} for i in range(4)]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: support-qa\ndataset: cases.jsonl\ntargets:\n  - {model: fake, prompt: support@production}\n"
        "assert:\n  - type: icontains\n"
    )
    first = run_cli(tmp_path, "eval", "run", str(suite))
    assert first.returncode == 0, first.stderr
    run_id = first.stderr.split("run ", 1)[1].split(":", 1)[0]

    gated = run_cli(tmp_path, "eval", "gate", str(suite), "--baseline", "support@production")
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert (
        f"baseline: run {run_id}, the newest of suite 'support-qa' answered by prompt support version 1"
        in (gated.stderr)
    )
    assert "pass rate unchanged" in gated.stdout

    template.write_text("name: support\nmessages:\n  - {role: user, content: 'tell me about {{ topic }}'}\n")
    assert run_cli(tmp_path, "prompts", "push", str(template), "--label", "staging").returncode == 0
    missing = run_cli(tmp_path, "eval", "gate", str(suite), "--baseline", "prompt:support@staging")
    assert missing.returncode == 2
    assert "no stored run of suite 'support-qa' was answered by prompt support version 2" in missing.stderr
    assert "Traceback" not in missing.stderr
