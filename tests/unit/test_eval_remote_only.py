"""A suite that only asks URLs and only uses checks without local models runs on the store alone: no runtime,
so no model, guard or PII engine is loaded in the client (the url client's start-up is most of its cost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llmdock.cli.eval_cmd import remote_only
from llmdock.evaluate.suite import load_suite
from llmdock.plugins import load_plugins

PROBE = """
import asyncio, sys
from pathlib import Path
from llmdock.cli.eval_cmd import _run
from llmdock.config import load_settings
from llmdock.evaluate.suite import load_suite
run_id, results = asyncio.run(_run(load_settings(None), load_suite(Path(sys.argv[1])), None, None, "test"))
print(len(results), "presidio_analyzer" in sys.modules)
"""


def suite(tmp_path: Path, target: str, check: str = "icontains") -> Path:
    (tmp_path / "cases.jsonl").write_text(json.dumps({"id": "q", "input": "hi", "expected": "hi"}) + "\n")
    path = tmp_path / f"suite-{len(list(tmp_path.glob('suite-*')))}.yaml"
    path.write_text(f"name: s\ndataset: cases.jsonl\ntargets:\n  - {target}\nassert:\n  - type: {check}\n")
    return path


URL = "{url: 'http://127.0.0.1:9/v1', model: fake}"  # nothing listens: the case errors, the run completes


def test_only_url_targets_with_local_model_free_checks_run_without_a_runtime(tmp_path: Path) -> None:
    metrics = load_plugins(entry_points=False).metrics
    assert remote_only(load_suite(suite(tmp_path, URL)), metrics)
    assert not remote_only(load_suite(suite(tmp_path, "{model: fake}")), metrics)
    assert not remote_only(load_suite(suite(tmp_path, URL, "similar")), metrics)  # the embedding model


def test_a_url_run_loads_no_pii_engine_and_a_local_one_does(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
        "models:\n  fake: {backend: fake}\n"  # privacy.pii is mask by default: the runtime loads Presidio
    )
    env = {"LLMDOCK_HOME": str(tmp_path), "LLMDOCK_CONFIG": str(tmp_path / "llmdock.yaml")}

    def loaded(target: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(suite(tmp_path, target))],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **env},
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    assert loaded(URL) == "1 False"
    assert loaded("{model: fake}") == "1 True"
