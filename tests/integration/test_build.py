"""`llmdock build` writes deploy files that hold up: a Dockerfile hadolint finds nothing in (two stages, a
non-root user, pinned images, HEALTHCHECK on /ready), the image's llmdock.yaml serving the registered model it
copied, a compose file with PostgreSQL and Redis, Kubernetes manifests; and examples/ci/release.yml is a valid
workflow whose release pipeline checks. (The image itself is not built here: see docs/jobs.md.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from llmdock.config import load_settings
from llmdock.jobs.deploy import BuildPlan, write_files
from llmdock.jobs.pipeline_spec import load_pipeline
from llmdock.plugins import load_plugins
from llmdock.registry import ModelRegistry
from llmdock.store import Store
from llmdock.store.audit import Actor

ROOT = Path(__file__).resolve().parents[2]


def test_build_writes_a_linted_image_compose_and_kubernetes_files_for_a_registered_model(
    tmp_path: Path,
) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "llmdock"\n')
    home.mkdir()
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)))
    registry = ModelRegistry(Store(f"sqlite:///{home / 'llmdock.db'}"), home)
    row = registry.register("tiny", model, Actor("test"), progress=False)
    registry.labels.set("tiny", "production", row.version, Actor("test"))

    built = subprocess.run(
        [sys.executable, "-m", "llmdock", "build", "--model", "models:/tiny@production", "-o", "deploy"],
        cwd=project,
        env={**os.environ, "LLMDOCK_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert "hadolint: no findings" in built.stderr
    out = project / "deploy"
    assert (out / "model" / "tiny.gguf").read_bytes() == model.read_bytes()

    dockerfile = (out / "Dockerfile").read_text()
    images = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert len(images) == 2  # a build stage and a runtime stage
    assert all(re.search(r":\d+\.\d+\.\d+-slim-bookworm$", i) for i in images)  # pinned, never :latest
    assert "\nUSER 10001:10001\n" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "/ready" in dockerfile
    assert "COPY deploy/model/tiny.gguf /models/tiny.gguf" in dockerfile

    settings = load_settings(out / "llmdock.yaml")
    assert settings.default_model == "tiny"
    assert settings.all_models()["tiny"].model_dump()["model_path"] == "/models/tiny.gguf"

    compose = yaml.safe_load((out / "compose.yaml").read_text())
    assert set(compose["services"]) == {"llmdock", "scheduler", "postgres", "redis"}
    assert compose["services"]["llmdock"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert compose["services"]["llmdock"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    kinds = {}
    for name in ("deployment", "service", "hpa"):
        doc = yaml.safe_load((out / "k8s" / f"{name}.yaml").read_text())
        kinds[doc["kind"]] = doc
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert kinds["Deployment"]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    metrics = kinds["HorizontalPodAutoscaler"]["spec"]["metrics"]
    assert metrics[0]["pods"]["metric"]["name"] == "llmdock_in_flight_requests"


def test_build_on_another_base_image_with_wheels_used_before_any_index(tmp_path: Path) -> None:
    """Where no registry is reachable, scripts/image_smoke.sh builds on a base made from Debian's packages."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    plan = BuildPlan(project, project / "deploy", "llmdock:t", None, "localhost/python:3.11-bookworm")
    write_files(plan, None)
    dockerfile = (project / "deploy" / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == ["localhost/python:3.11-bookworm"] * 2
    assert (project / "deploy" / "wheels").is_dir()
    assert "COPY deploy/wheels /wheels" in dockerfile
    assert "ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile  # torch's CPU build


def test_build_outside_a_source_tree_says_where_to_run_it(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "llmdock", "build"],
        cwd=tmp_path,
        env={**os.environ, "LLMDOCK_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 2
    assert "no llmdock source tree at or above" in built.stderr
    assert not (tmp_path / "deploy").exists()


def test_the_release_workflow_tests_first_and_its_pipeline_checks() -> None:
    """(Its schema is checked with eval-gate.yml's, in test_eval_gate_workflow.py.)"""
    workflow = ROOT / "examples" / "ci" / "release.yml"
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    assert jobs["release"]["needs"] == "test"
    pipeline = load_pipeline(ROOT / "examples" / "ci" / "release-pipeline.yaml", load_plugins().job_steps, {})
    assert [(s.uses, s.if_) for s in pipeline.steps] == [
        ("eval.gate", None),
        ("models.promote", "${steps.gate.passed}"),
    ]
