"""A suite that only asks URLs and only uses checks without local models runs on the store alone: no runtime,
so no model, guard or PII engine is loaded in the client (the url client's start-up is most of its cost)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from llmdock.cli.eval_cmd import _run, remote_only
from llmdock.config.sections import PrivacySettings
from llmdock.evaluate.case import BaseMetric, Case, CaseResult, MetricFactory, Output, Score
from llmdock.evaluate.results import load_results
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import load_suite
from llmdock.guards.base import DetectorFactory
from llmdock.hookspecs import hookimpl
from llmdock.plugins import load_plugins
from llmdock.runtime import Runtime
from tests.conftest import fake_settings
from tests.upstream import Upstream

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
    if not (tmp_path / "cases.jsonl").exists():  # else the test's own cases
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


# What a url-only `llmdock eval run` leaves out of the client: the guards, the runtime, the structured stage,
# the pipeline's modules, the CLI's access commands; numpy and scipy.stats when no interval needs a bootstrap
# (pass/fail checks: their intervals, like the pass rate's, are Wilson ones); Alembic when the store is at
# its newest revision; httpx when no proxy is configured (the calls go through the gateway's own pool).
HEAVY = (
    "llmdock.guards",
    "llmdock.runtime",
    "llmdock.structured",
    "llmdock.pipeline",
    "llmdock.cli.access",
    "scipy.stats",
    "numpy",
    "alembic",
    "httpx",
)
CLI_PROBE = f"""
import atexit, sys
atexit.register(lambda: print("LOADED", *[m for m in {HEAVY!r} if m in sys.modules]))
sys.argv = ["llmdock", "eval", "run", *sys.argv[1:]]
from llmdock.cli.main import main
main()
"""


def _cases(tmp_path: Path, expected: list[str]) -> Path:
    rows = [{"id": f"c{i}", "input": f"question {i}", "expected": e} for i, e in enumerate(expected)]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "cases.jsonl"


def test_a_url_only_eval_run_imports_only_the_metrics_and_the_store(tmp_path: Path) -> None:
    upstream = Upstream("far")
    try:
        _cases(tmp_path, ["reply", "REPLY FROM", "far", "elsewhere"])
        path = suite(tmp_path, f"{{url: '{upstream.url}', model: m}}")
        (tmp_path / "llmdock.yaml").write_text("log_level: warning\n")
        env = {**os.environ, "LLMDOCK_HOME": str(tmp_path), "LLMDOCK_CONFIG": str(tmp_path / "llmdock.yaml")}
        env = {k: v for k, v in env.items() if k.lower() not in ("http_proxy", "all_proxy")}

        def eval_run() -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-c", CLI_PROBE, str(path)]
            return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

        first, second = eval_run(), eval_run()  # the first creates the store (Alembic), the second opens it
    finally:
        upstream.stop()
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == "LOADED alembic"
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == "LOADED"  # none of HEAVY
    assert "4 results, 0 errored" in second.stdout
    assert upstream.hits == 8


async def test_a_url_only_run_scores_as_the_runtime_path_does(tmp_path: Path) -> None:
    """The lean path (store only, the metrics hook alone) and the runtime's give the same results."""
    upstream = Upstream("far")
    try:
        _cases(tmp_path, ["reply", "nope", "far", "elsewhere", "FROM"])
        loaded = load_suite(suite(tmp_path, f"{{url: '{upstream.url}', model: m}}", "icontains"))
        # no Presidio, no guard models: what the runtime path adds is beside the point here
        pipeline = ["preprocess", "generate", "postprocess"]
        settings = fake_settings(tmp_path, privacy=PrivacySettings(pii="off"), pipeline=pipeline)
        assert remote_only(loaded, load_plugins().metrics)
        lean_id, lean = await _run(settings, loaded, None, None, "test")
        plugins = load_plugins()
        runtime = Runtime(settings, plugins=plugins)
        try:
            assert runtime.store is not None
            full = await run(loaded, runtime.store, plugins.metrics, runtime, show_progress=False)
            full_results = load_results(runtime.store, full.run_id)
        finally:
            await runtime.close()
    finally:
        upstream.stop()

    def key(results: list[CaseResult]) -> list[tuple[str, bool, float, str, dict[str, Score]]]:
        return sorted((r.case_id, r.passed, r.score, r.output.text, r.scores) for r in results)

    assert lean_id != full.run_id
    assert key(lean) == key(full_results)
    assert [r.passed for r in sorted(lean, key=lambda r: r.case_id)] == [True, False, True, False, True]


def test_asking_for_the_metrics_calls_no_other_hook_and_keeps_third_party_metrics() -> None:
    calls: list[str] = []

    class ThirdParty:
        @hookimpl
        def llmdock_metrics(self) -> list[MetricFactory]:
            calls.append("metrics")
            return [ShoutMetric]

        @hookimpl
        def llmdock_detectors(self) -> list[DetectorFactory]:
            calls.append("detectors")
            return []

    plugins = load_plugins(entry_points=False, extra=[ThirdParty()])
    assert plugins.metrics["shout"] is ShoutMetric
    assert plugins.metrics["icontains"].name == "icontains"  # the built-ins beside it
    assert calls == ["metrics"]
    assert "injection" in plugins.detectors  # asked for: collected then, the plugin's hook called too
    assert calls == ["metrics", "detectors"]
    plugins.metrics  # noqa: B018 -- kept: the hook is not called twice
    assert calls == ["metrics", "detectors"]


class ShoutMetric(BaseMetric):
    name = "shout"

    async def score(self, case: Case, output: Output) -> Score:
        return Score(float(output.text.isupper()), output.text.isupper())
