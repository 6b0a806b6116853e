"""A fine-tuning config's mistakes are named ``file:line: field`` before any model is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.errors import ConfigError, ValidationError
from llmdock.finetune.config import load_config
from llmdock.finetune.run import run_finetune
from llmdock.store.audit import Actor

GOOD = "name: tuned\nbase_model: smollm2\ndataset: chat.jsonl\n"


def _settings(home: Path) -> Settings:
    return Settings(
        home=home,
        models={"fake": ModelConfig(backend="fake"), "remote": ModelConfig(backend="openai", model="x")},
        default_embedding_model="",
    )


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "finetune.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("extra", "line", "field", "message"),
    [
        ("training:\n  max_steps: 0\n", 5, "training.max_steps", "greater than or equal to 1"),
        ("training:\n  learning_rate: -1\n", 5, "training.learning_rate", "greater than 0"),
        ("lora: {r: 8, alhpa: 16}\n", 4, "lora.alhpa", "Extra inputs are not permitted"),
        ("export:\n  quantize: [q3_xs]\n", 5, "export.quantize.0", "'q8_0'"),
        ("training: {max_steps: 5, checkpoint_every: 10}\n", 4, "training", "no checkpoint would be written"),
        ("task: dpo\n", 4, "task", "'sft'"),
    ],
)
def test_a_bad_hyperparameter_is_named_by_line_and_field(
    tmp_path: Path, extra: str, line: int, field: str, message: str
) -> None:
    path = _config(tmp_path, GOOD + extra)
    with pytest.raises(ConfigError) as err:
        load_config(path, _settings(tmp_path))
    assert err.value.one_line().startswith(f"{path}:{line}: {field}: "), err.value.one_line()
    assert message in err.value.message


def test_an_unknown_base_model_names_the_llama_cpp_models_there_are(tmp_path: Path) -> None:
    path = _config(tmp_path, "name: tuned\nbase_model: gpt-9\ndataset: chat.jsonl\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, _settings(tmp_path))
    assert err.value.where == f"{path}:2: base_model"
    assert "unknown base model 'gpt-9'" in err.value.message
    assert "(gemma3-270m, smollm2)" in err.value.message


def test_a_base_model_that_is_not_a_gguf_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, "name: tuned\nbase_model: remote\ndataset: chat.jsonl\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, _settings(tmp_path))
    assert err.value.where == f"{path}:2: base_model"
    assert "not a llama.cpp GGUF model (backend 'openai')" in err.value.message


def test_a_registry_name_that_cannot_be_registered_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, "name: 'my model!'\nbase_model: smollm2\ndataset: chat.jsonl\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, _settings(tmp_path))
    assert err.value.where == f"{path}:1: name"


def test_an_unknown_dataset_version_stops_the_run_before_any_model_loads(tmp_path: Path) -> None:
    path = _config(tmp_path, "name: tuned\nbase_model: smollm2\ndataset: support/7\n")
    with pytest.raises(ConfigError) as err:
        run_finetune(path, _settings(tmp_path / "home"), Actor("test"))
    assert err.value.where == f"{path}:3: dataset"
    assert "unknown dataset version 'support/7': no dataset 'support'" in err.value.message
    assert not (tmp_path / "home" / "finetune").exists()


def test_a_bad_row_in_a_jsonl_dataset_is_named_by_its_line(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    bad = {"messages": [{"role": "assistant", "content": "first?"}]}
    (tmp_path / "chat.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValidationError) as err:
        run_finetune(_config(tmp_path, GOOD), _settings(tmp_path / "home"), Actor("test"))
    assert err.value.where == f"{tmp_path / 'chat.jsonl'}:2: messages[0].role"


def test_the_cli_prints_one_line_and_exits_2_never_a_traceback(tmp_path: Path) -> None:
    path = _config(tmp_path, GOOD + "training: {batch_size: 0}\n")
    env = dict(os.environ, LLMDOCK_HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [sys.executable, "-m", "llmdock", "finetune", "run", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"llmdock: error: {path}:4: training.batch_size: Input should be greater than or equal to 1"
    )
