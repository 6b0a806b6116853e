"""``llmdock ARGS`` run inside the test's own process (typer's CliRunner) on a home with its llmdock.yaml,
and homes that share their ONNX exports across the session's tests.

The same commands as ``run_cli`` runs in a subprocess, without a new interpreter importing llmdock, torch
and the model libraries for each one: a test that runs several commands saves seconds on each. MiniLM runs
on onnxruntime from an export made from its files on first use and cached in ``<home>/onnx`` (by the files'
digest); a fresh home per test made that export again in every test — most of its first ``kb add``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from llmdock.cli.main import app


def llmdock(home: Path, *args: str) -> Result:
    """The command's result: ``exit_code``, ``stdout``, ``stderr``, and ``exception`` for an llmdock error
    (which the console script would print as ``llmdock: error: ...``)."""
    env = {"LLMDOCK_HOME": str(home)}
    if (home / "llmdock.yaml").exists():
        env["LLMDOCK_CONFIG"] = str(home / "llmdock.yaml")
    return CliRunner().invoke(app, list(args), env=env)


def new_home(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty llmdock home whose ``onnx`` export cache is the session's: exported once, used by each test
    (``load_or_export`` locks it, so tests running at once take turns)."""
    shared = tmp_path_factory.getbasetemp() / "onnx-exports"
    shared.mkdir(exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    (home / "onnx").symlink_to(shared, target_is_directory=True)
    return home
