"""The ``llmdock`` command imports only the module of the command it runs."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from llmdock.cli.main import COMMANDS, _wanted, build_app


def test_every_command_resolves_and_keeps_its_subcommands() -> None:
    result = CliRunner().invoke(build_app(), ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
    evaluated = CliRunner().invoke(build_app(["eval"]), ["eval", "--help"])
    for sub in ("run", "compare", "gate", "report"):  # compare/gate/report come from extension modules
        assert sub in evaluated.output


def test_a_lone_command_is_still_called_by_its_name() -> None:
    result = CliRunner().invoke(build_app(["serve"]), ["serve", "--help"])
    assert result.exit_code == 0
    assert "Usage: llmdock serve" in result.output


def test_only_the_named_command_is_wanted() -> None:
    assert _wanted(["eval", "run", "x.yaml"]) == ["eval"]
    assert _wanted(["--help"]) is None
    assert _wanted([]) is None
    assert _wanted(["nosuch"]) is None


def test_running_one_command_does_not_import_the_others() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['llmdock', 'eval', '--help']\n"
        "from llmdock.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('llmdock.cli.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().splitlines()[-1]
    assert "llmdock.cli.eval_gate" in loaded
    assert "llmdock.cli.serve" not in loaded
    assert "llmdock.cli.finetune" not in loaded


def test_serve_with_workers_gives_uvicorn_the_configured_healthcheck(tmp_path, monkeypatch) -> None:
    import uvicorn

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))
    config = tmp_path / "llmdock.yaml"
    config.write_text(
        "worker_healthcheck_s: 45\nmetrics: {enabled: false}\nmodels:\n  fake: {backend: fake}\n"
        "default_model: fake\n"
    )
    saved = dict(
        os.environ
    )  # serve hands its workers the config through the environment: keep it to this test
    try:
        result = CliRunner().invoke(build_app(["serve"]), ["serve", "-c", str(config), "--workers", "2"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.exit_code == 0, result.output
    assert seen["workers"] == 2
    assert seen["timeout_worker_healthcheck"] == 45
