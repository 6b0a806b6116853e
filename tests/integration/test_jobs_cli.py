"""`llmdock jobs run`: a pipeline YAML is checked whole before anything runs (file:line: field errors), then its
steps run in order with outputs passed by reference, and the run and its steps are stored for list/show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmdock.errors import ConfigError
from llmdock.jobs.pipeline_spec import load_pipeline
from llmdock.plugins import load_plugins
from tests.integration.conftest import run_cli

CONFIG = "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n  fake: {backend: fake}\n"
GOOD = """\
name: nightly
params:
  model: fake
  greeting: hello
steps:
  - id: score
    uses: batch.run
    with:
      input: in.jsonl
      output: out/scored.jsonl
      model: ${params.model}
  - id: count
    uses: shell
    with:
      run: wc -l ${steps.score.outputs.output}
  - id: echo
    uses: shell
    with:
      run: echo ${params.greeting} ${steps.score.outputs.answered} answered
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("uses: shell\n    with:\n      run: wc", "uses: shel\n    with:\n      run: wc"),
            ":13: steps.1.uses",
            "unknown step 'shel'",
        ),
        (
            ("${steps.score.outputs.output}", "${steps.score.outputs.rows}"),
            ":15: steps.1.with.run",
            "has no output 'rows'",
        ),
        (
            ("${steps.score.outputs.answered}", "${steps.echo.outputs.stdout}"),
            ":19: steps.2.with.run",
            "no step 'echo' runs before",
        ),
        (("${params.model}", "${params.modle}"), ":11: steps.0.with.model", "no parameter 'modle'"),
        (
            ("      output: out/scored.jsonl\n", "      output: out/scored.jsonl\n      concurrency: none\n"),
            ":11: steps.0.with.concurrency",
            "valid integer",
        ),
        (("  - id: count", "  - id: score"), ":12: steps.1.id", "used twice"),
    ],
)
def test_a_bad_pipeline_is_refused_whole_naming_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], where: str, message: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, load_plugins().job_steps, {})
    assert info.value.one_line().startswith(f"{path}{where}: ")
    assert message in info.value.one_line()


def test_a_pipeline_runs_its_steps_in_order_passing_outputs_and_is_stored(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(CONFIG)
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}) + "\n" for i in range(5))
    )
    (tmp_path / "out").mkdir()
    path = write(tmp_path, GOOD)
    ran = run_cli(tmp_path, "jobs", "run", str(path), "--param", "greeting=hi")
    assert ran.returncode == 0, ran.stderr
    listed = run_cli(tmp_path, "jobs", "list")
    assert "nightly" in listed.stdout
    assert "succeeded" in listed.stdout
    run_id = ran.stderr.split("run ", 1)[1].split()[0]
    shown = run_cli(tmp_path, "jobs", "show", run_id, "--logs")
    assert shown.returncode == 0, shown.stderr
    assert f"5 {tmp_path / 'out' / 'scored.jsonl'}" in shown.stdout  # wc -l of the batch step's output
    assert "hi 5 answered" in shown.stdout  # a parameter from --param, an output by reference
    assert len((tmp_path / "out" / "scored.jsonl").read_text().splitlines()) == 5

    failing = write(tmp_path, GOOD.replace("run: wc -l", "run: false"))
    ran = run_cli(tmp_path, "jobs", "run", str(failing))
    assert ran.returncode == 1
    assert "failed count 'false " in ran.stderr
    assert "exited with 1" in ran.stderr
    assert "skipped echo" in " ".join(ran.stderr.split())


def test_a_misspelt_field_is_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("    with:\n      run: wc", "    wiht:\n      run: wc"))
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, load_plugins().job_steps, {})
    assert info.value.one_line().startswith(f"{path}:14: steps.1.wiht: Extra inputs are not permitted")
