"""Settings sources and their order, and config errors that name file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmdock.config import Settings, load_settings
from llmdock.errors import ConfigError
from llmdock.plugins import load_plugins
from llmdock.runtime import build_backends, build_pipeline


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmdock.yaml"
    path.write_text(text)
    return path


def test_sources_override_in_order_defaults_yaml_env_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path, "port: 9001\nhost: 0.0.0.0\nlog_level: warning\n")
    assert load_settings(cfg).port == 9001
    assert load_settings(cfg).max_body_bytes == 1024 * 1024  # default kept
    monkeypatch.setenv("LLMDOCK_PORT", "9002")
    settings = load_settings(cfg)
    assert (settings.port, settings.host) == (9002, "0.0.0.0")
    assert load_settings(cfg, port=9003).port == 9003
    monkeypatch.setenv("LLMDOCK_TRACE__BATCH_SIZE", "7")
    assert load_settings(cfg).trace.batch_size == 7


def test_yaml_models_add_to_the_builtin_ones(tmp_path: Path) -> None:
    cfg = write(tmp_path, "models:\n  echo:\n    backend: fake\n    reply: hi\n")
    models = load_settings(cfg).all_models()
    assert {"smollm2", "gemma3-270m", "all-minilm-l6-v2", "echo"} <= set(models)
    assert models["echo"].backend_params() == {"reply": "hi"}


def test_wrong_type_names_file_line_and_field(tmp_path: Path) -> None:
    cfg = write(tmp_path, "host: 127.0.0.1\ntrace:\n  enabled: true\n  batch_size: lots\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.where == f"{cfg}:4: trace.batch_size"


def test_unknown_setting_names_its_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, "port: 8000\nprot: 8001\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert info.value.where == f"{cfg}:2: prot"


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, "port: 8000\nmodels:\n  a: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert str(cfg) in (info.value.where or "")
    assert "invalid YAML" in info.value.message


def test_bad_env_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMDOCK_PORT", "eighty")
    with pytest.raises(ConfigError) as info:
        load_settings(None)
    assert "LLMDOCK_PORT" in (info.value.where or "")


def test_unknown_backend_names_the_models_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, "models:\n  mine:\n    backend: telepathy\n")
    settings = load_settings(cfg)
    with pytest.raises(ConfigError) as info:
        build_backends(settings, load_plugins())
    assert info.value.where == f"{cfg}:3: models.mine.backend"
    assert "llamacpp" in info.value.message


def test_bad_backend_parameter_names_its_line(tmp_path: Path) -> None:
    cfg = write(tmp_path, "models:\n  mine:\n    backend: fake\n    delay_s: -1\n")
    with pytest.raises(ConfigError) as info:
        build_backends(load_settings(cfg), load_plugins())
    assert info.value.where == f"{cfg}:4: models.mine.delay_s"


def test_unknown_stage_names_its_position(tmp_path: Path) -> None:
    cfg = write(tmp_path, "pipeline:\n  - preprocess\n  - teleport\n  - generate\n")
    settings = load_settings(cfg)
    with pytest.raises(ConfigError) as info:
        build_pipeline(settings, load_plugins(), None)
    assert info.value.where == f"{cfg}:3: pipeline.1"


def test_pipeline_without_generate_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, pipeline=["preprocess"])
    with pytest.raises(ConfigError):
        build_pipeline(settings, load_plugins(), None)


def test_cli_prints_one_line_and_exits_2_on_bad_config(tmp_path: Path) -> None:
    cfg = write(tmp_path, "port: [1]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "llmdock", "models", "list", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"llmdock: error: {cfg}:1: port:")
    assert "Traceback" not in proc.stderr


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}`" not in doc]
    assert not missing, f"docs/configuration.md does not mention: {missing}"


def test_privacy_pii_off_reads_as_off_though_yaml_makes_it_false(tmp_path: Path) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text("privacy:\n  pii: off\n")
    assert load_settings(cfg).privacy.pii == "off"
    cfg.write_text("privacy:\n  pii: shred\n")
    with pytest.raises(ConfigError, match="Input should be 'off', 'mask' or 'pseudonymize'") as info:
        load_settings(cfg)
    assert info.value.where == f"{cfg}:2: privacy.pii"
