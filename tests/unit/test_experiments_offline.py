"""``llmdock experiments offline``: an experiment's variants run over a suite and compared, paired by case."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.errors import NotFound
from llmdock.evaluate.results import list_runs, load_results
from llmdock.store import Store
from tests.unit.test_experiments import push_versions


def test_variants_run_as_targets_and_the_difference_is_tested(tmp_path: Path) -> None:
    db = tmp_path / "llmdock.db"
    config = tmp_path / "llmdock.yaml"
    config.write_text(
        f"home: {tmp_path}\ndatabase_url: sqlite:///{db}\ninclude_builtin_models: false\n"
        "default_model: fake\ndefault_embedding_model: ''\nmodels:\n  fake: {backend: fake}\n"
    )
    store = Store(f"sqlite:///{db}")
    store.migrate()
    push_versions(store)  # support v1 "Answer briefly: {{ q }}", v2 "Answer in detail: {{ q }}"
    store.close()
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        "".join(json.dumps({"id": f"c{i}", "vars": {"q": f"question {i}"}}) + "\n" for i in range(8))
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "dataset: cases.jsonl\ntargets:\n  - {model: fake, prompt: support@production}\n"
        "assert:\n  - {type: contains, value: detail}\n"
    )
    cli = CliRunner()
    made = cli.invoke(
        app,
        [
            "experiments",
            "create",
            "tone",
            "-v",
            "a=prompt:support@1",
            "-v",
            "b=prompt:support@2",
            "--config",
            str(config),
        ],
    )
    assert made.exit_code == 0, made.output
    done = cli.invoke(
        app,
        ["experiments", "offline", "tone", "--suite", str(suite), "--config", str(config)],
        env={"COLUMNS": "200"},
    )
    assert done.exit_code == 0, done.output
    assert "a → b" in done.output
    assert "significant" in done.output
    store = Store(f"sqlite:///{db}")
    try:
        (run, _), *_ = list_runs(store)
        results = load_results(store, run.id)
    finally:
        store.close()
    assert {r.target for r in results} == {"a", "b"}
    assert all(r.passed == (r.target == "b") for r in results)
    missing = cli.invoke(
        app, ["experiments", "offline", "nope", "--suite", str(suite), "--config", str(config)]
    )
    assert missing.exit_code != 0
    assert isinstance(missing.exception, NotFound)
    assert "nope" in missing.exception.one_line()
