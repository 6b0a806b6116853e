"""The ``finetune`` pipeline step calls ``llmdock.finetune``'s run with its config: a config with a bad field
fails the step (and the run) with that file's ``file:line: field: message``, before any model loads."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llmdock.config import ModelConfig, Settings
from llmdock.jobs import run_store
from llmdock.jobs.pipeline_run import RunOptions, run_pipeline
from llmdock.jobs.pipeline_spec import load_pipeline
from llmdock.jobs.steps import Services
from llmdock.plugins import load_plugins
from llmdock.store import Store
from llmdock.store.audit import Actor


def no_serving() -> Any:
    raise AssertionError("a finetune step asks no served model")


def test_a_finetune_step_with_a_bad_config_fails_naming_the_configs_file_line_and_field(
    tmp_path: Path,
) -> None:
    plugins = load_plugins()
    assert plugins.job_steps["finetune"].outputs[0] == "model"  # ${steps.tune.outputs.model}
    tune = tmp_path / "tune.yaml"
    tune.write_text("name: tuned\nbase_model: smollm2\ndataset: chat.jsonl\ntraining: {max_steps: 0}\n")
    (tmp_path / "pipeline.yaml").write_text(
        "steps:\n  - id: tune\n    uses: finetune\n    with: {config: tune.yaml}\n"
        "  - id: promote\n    uses: models.promote\n"
        "    with: {model: '${steps.tune.outputs.model}', alias: production}\n"
    )
    pipeline = load_pipeline(tmp_path / "pipeline.yaml", plugins.job_steps, {})
    settings = Settings(
        home=tmp_path, models={"fake": ModelConfig(backend="fake")}, default_embedding_model=""
    )
    store = Store(f"sqlite:///{tmp_path}/jobs.db")
    services = Services(settings, store, Actor("test"), no_serving, plugins.metrics, plugins.dataset_steps)
    ran = asyncio.run(
        run_pipeline(pipeline, plugins.job_steps, store, no_serving, options=RunOptions(services=services))
    )
    assert ran.status == "failed"
    _, steps = run_store.get_run(store, ran.id)
    assert steps[0].status == "failed"
    assert steps[0].error.startswith(f"{tune}:4: training.max_steps: "), steps[0].error
    assert steps[1].status == "skipped"
