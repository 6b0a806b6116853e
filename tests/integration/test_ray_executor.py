"""``--executor ray`` on a real local Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs, stopped at the
end, shared by this module's tests): a batch and an evaluation computed by Ray workers equal the local
executor's, row for row and case for case; optuna trials run on two workers at once, sharing the study kept
in the store; a Ray address that does not answer is a clear error with nothing written.

The rows and cases are answered by the ``fake`` backend (``fake answer to: <question>``: deterministic, no
model), through the whole served pipeline on each worker. The commands run in this process (typer's runner),
so only the Ray workers pay for importing llmdock.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.finetune.config import FinetuneConfig
from llmdock.finetune.search import open_study, search
from llmdock.jobs.executor import ExecutorSpec
from llmdock.jobs.ray_search import trials_on_ray
from llmdock.store import Store
from tests.raycluster import RayCluster, free_port

FAKE = "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n  fake: {backend: fake}\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    ray_cluster = RayCluster(cpus=2)
    try:
        yield ray_cluster
    finally:
        ray_cluster.stop()


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def answers(path: Path) -> list[dict[str, Any]]:
    """The output's lines without what differs between any two runs (trace ids, completion ids, times)."""
    kept = []
    for line in path.read_text().splitlines():
        a = json.loads(line)
        if a["response"]:
            a["response"].pop("request_id")
            a["response"]["body"].pop("id", None)
            a["response"]["body"].pop("created", None)
        kept.append(a)
    return kept


def results(home: Path, run_id: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "llmdock.db") as db:
        rows = db.execute(
            "SELECT target, case_id, repeat, passed, score, output, scores, error FROM eval_results"
            " WHERE run_id = ?"
            " ORDER BY case_id",
            (run_id,),
        ).fetchall()
    return [(*r[:6], {k: v["value"] for k, v in json.loads(r[6]).items()}, r[7]) for r in rows]


@pytest.mark.server  # starts a Ray head (GCS, raylet, client server) and talks to it
def test_a_batch_and_an_evaluation_on_ray_equal_the_local_executors(
    cluster: RayCluster, tmp_path: Path
) -> None:
    config = tmp_path / "llmdock.yaml"
    config.write_text(f"home: {tmp_path}\n{FAKE}")
    lines = [json.dumps({"custom_id": f"row-{i}", "body": {"messages": [{"role": "user", "content": f"q {i}"}]}})
             for i in range(40)]  # fmt: skip
    lines[5] = "{broken"
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    batch = ["batch", "run", str(src), "-m", "fake", "-j", "6", "-c", str(config)]
    local = cli(*batch, "-o", str(tmp_path / "local.jsonl"))
    assert local.exit_code == 0, (local.output, local.exception)
    on_ray = cli(*batch, "-o", str(tmp_path / "ray.jsonl"), "--executor", "ray", "--address", cluster.address)
    assert on_ray.exit_code == 0, (on_ray.output, on_ray.exception)
    assert "40 rows: 39 answered, 1 with an error" in on_ray.output
    mine, theirs = answers(tmp_path / "local.jsonl"), answers(tmp_path / "ray.jsonl")
    assert theirs == mine  # every row, in input order, the same answer or the same error
    assert theirs[7]["response"]["body"]["choices"][0]["message"]["content"] == "fake answer to: q 7"
    assert theirs[5]["error"]["message"].startswith(f"{src}:6: not valid JSON")

    cases = [
        {"id": f"c{i:02}", "input": f"q {i}", "expected": f"q {i}" if i % 3 else "Paris"} for i in range(12)
    ]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ndataset: cases.jsonl\ntargets: [{model: fake}]\n"
                     "assert:\n  - type: icontains\n  - type: rouge-l\n    threshold: 0.5\n")  # fmt: skip
    runs = []
    for extra in ([], ["--executor", "ray", "--address", cluster.client_address]):  # ray:// this time
        done = cli("eval", "run", str(suite), "-c", str(config), *extra)
        assert done.exit_code == 0, (done.output, done.exception, cluster.logs())
        runs.append(done.output.split("run ")[-1].split(":")[0])
    local_results, ray_results = results(tmp_path, runs[0]), results(tmp_path, runs[1])
    assert len(ray_results) == 12
    assert [r[3] for r in ray_results].count(1) == 8  # 4 of the 12 expect "Paris": real failures
    assert ray_results == local_results


@pytest.mark.server
def test_optuna_trials_run_on_two_ray_workers_at_once_sharing_the_study_in_the_store(
    cluster: RayCluster, tmp_path: Path
) -> None:
    from tests.unit.test_finetune_search import DATA, tiny_search_worker  # what each worker builds

    config = FinetuneConfig.model_validate(DATA)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    try:
        build = functools.partial(tiny_search_worker, url, str(tmp_path))
        run_trials = trials_on_ray(build, ExecutorSpec(kind="ray", address=cluster.address, workers=2))
        best_file = tmp_path / "tiny.best.yaml"
        outcome = search(config, DATA, store, 4, best_file=best_file, run_trials=run_trials)
        stored = open_study(config, store).get_trials(deepcopy=False)
    finally:
        store.close()
    assert [n for n, _, _ in outcome.trials] == [0, 1, 2, 3]
    assert {s for _, s, _ in outcome.trials} <= {"complete", "pruned"}
    workers = {t.user_attrs["worker"] for t in stored}
    assert len(workers) == 2  # both workers ran trials, into the one study
    assert not any(w.endswith(f":{os.getpid()}") for w in workers)  # none ran here
    params = [t.params["training.learning_rate"] for t in stored]
    assert len(set(params)) == 4  # each trial's sampler seeded apart: four different values tried
    assert (
        yaml.safe_load(best_file.read_text())["training"]["learning_rate"]
        == outcome.best_params["training.learning_rate"]
    )


def test_a_ray_address_that_does_not_answer_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(f"home: {tmp_path}\n{FAKE}")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    port = free_port()  # nothing listens there
    (tmp_path / "tune.yaml").write_text(
        "name: t\nbase_model: smollm2\ndataset: in.jsonl\nsearch: {space: {lora.r: {low: 4, high: 8}}}\n"
    )
    for args in (
        ["batch", "run", str(src), "-o", str(tmp_path / "out.jsonl"), "-m", "fake"],
        ["eval", "run", str(tmp_path / "suite.yaml")],
        ["finetune", "search", str(tmp_path / "tune.yaml")],
    ):
        if args[0] == "eval":
            (tmp_path / "cases.jsonl").write_text(
                json.dumps({"id": "a", "input": "hi", "expected": "hi"}) + "\n"
            )
            (tmp_path / "suite.yaml").write_text(
                "dataset: cases.jsonl\ntargets: [{model: fake}]\nassert: [{type: icontains}]\n"
            )
        done = cli(*args, "-c", str(tmp_path / "llmdock.yaml"), "--executor", "ray",
                   "--address", f"ray://127.0.0.1:{port}")  # fmt: skip
        assert done.exit_code != 0
        assert "does not answer" in str(done.exception), done.output
        assert f"127.0.0.1:{port}" in str(done.exception)
    assert not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "out.jsonl.progress").exists()
    assert not (tmp_path / "llmdock.db").exists() or _nothing_stored(tmp_path)


def _nothing_stored(home: Path) -> bool:
    with sqlite3.connect(home / "llmdock.db") as db:
        runs = db.execute("SELECT count(*) FROM eval_runs").fetchone()[0]
        studies = db.execute("SELECT count(*) FROM finetune_search_logs").fetchone()[0]
    return runs == studies == 0
