"""``eval gate --baseline`` names a run, or a model version / prompt version through the registries: the newest
run of the same suite that version answered (results record the artifact and the prompt version served)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmdock.backends.model_files import resolve_model_file
from llmdock.errors import ConfigError, InvalidRequest, NotFound
from llmdock.evaluate.baseline import RegistryRef, find_baseline, parse_ref
from llmdock.evaluate.results import result_rows
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import load_suite
from llmdock.prompts import PromptRegistry
from llmdock.registry import ModelRegistry
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from tests.conftest import fake_settings

ME = Actor("tester")


def write_suite(tmp_path: Path, name: str, target: str) -> Path:
    (tmp_path / "cases.jsonl").write_text(
        "".join(
            json.dumps({"id": f"q{i}", "input": f"question {i}", "expected": "question"}) + "\n"
            for i in range(3)
        )
    )
    suite = tmp_path / f"{name}.yaml"
    suite.write_text(
        f"name: {name}\ndataset: cases.jsonl\ntargets:\n  - {target}\nassert:\n  - type: icontains\n"
    )
    return suite


async def run_suite(runtime: Runtime, suite: Path) -> str:
    assert runtime.store is not None
    outcome = await run(
        load_suite(suite), runtime.store, runtime.plugins.metrics, runtime, show_progress=False
    )
    return outcome.run_id


def register(runtime: Runtime, tmp_path: Path, content: bytes, alias: str) -> str:
    """Register a file as the next version of model ``ft`` with ``alias``; returns its artifact hash."""
    assert runtime.store is not None
    registry = ModelRegistry(runtime.store, runtime.settings.home)
    path = tmp_path / f"ft-{alias}.gguf"
    path.write_bytes(content)
    row = registry.register("ft", path, ME, progress=False)
    registry.labels.set("ft", alias, row.version, ME)
    return row.artifact


def serve_from(runtime: Runtime, artifact: str) -> None:
    """Make the fake model report what a llamacpp backend loaded from ``models:/ft@…`` reports."""
    runtime.backend("fake").deployments[0].backend.origin = {"model_version": "ft/1", "artifact": artifact}


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("0123abcd", None),
        ("ft@production", RegistryRef(None, "ft", label="production")),
        ("ft/3", RegistryRef(None, "ft", version=3)),
        ("model:ft@staging", RegistryRef("model", "ft", label="staging")),
        ("models:/ft@staging", RegistryRef("model", "ft", label="staging")),
        ("prompt:support/2", RegistryRef("prompt", "support", version=2)),
        ("prompt:support", RegistryRef("prompt", "support", label="latest")),
    ],
)
def test_a_baseline_is_a_run_id_or_a_registry_reference(ref: str, parsed: RegistryRef | None) -> None:
    assert parse_ref(ref) == parsed


def test_a_registered_model_file_is_recorded_with_its_version_and_artifact(tmp_path: Path) -> None:
    runtime = Runtime(fake_settings(tmp_path / "home"))
    artifact = register(runtime, tmp_path, b"weights v1", "production")
    path, origin = resolve_model_file("models:/ft@production", runtime.settings, where="test")
    assert origin == {"model_file": str(path), "model_version": "ft/1", "artifact": artifact}
    with pytest.raises(ConfigError, match="no alias 'staging'"):
        resolve_model_file("models:/ft@staging", runtime.settings, where="test")


async def test_model_at_alias_finds_the_newest_run_of_the_suite_that_its_artifact_answered(
    tmp_path: Path,
) -> None:
    runtime = Runtime(fake_settings(tmp_path / "home"))
    assert runtime.store is not None
    v1 = register(runtime, tmp_path, b"weights v1", "production")
    v2 = register(runtime, tmp_path, b"weights v2", "staging")
    suite = write_suite(tmp_path, "qa", "model: fake")
    serve_from(runtime, v1)
    old_v1 = await run_suite(runtime, suite)
    new_v1 = await run_suite(runtime, suite)
    serve_from(runtime, v2)
    await run_suite(runtime, suite)  # newer, but answered by v2
    await run_suite(runtime, write_suite(tmp_path, "other", "model: fake"))  # another suite
    rows = result_rows(runtime.store, new_v1)
    assert {r.served["llmdock.served_artifact"] for r in rows} == {v1}  # what the runner recorded

    home = runtime.settings.home
    found = find_baseline(runtime.store, home, "qa", "ft@production")
    assert found.run.id == new_v1 != old_v1
    assert "model ft version 1" in found.why
    assert find_baseline(runtime.store, home, "qa", "models:/ft/1").run.id == new_v1
    assert find_baseline(runtime.store, home, "qa", "ft@staging").run.id != new_v1
    with pytest.raises(
        NotFound, match="no stored run of suite .other. was answered by model ft version 1"
    ) as err:
        find_baseline(runtime.store, home, "other", "ft@production")
    assert "llmdock eval run" in err.value.message
    with pytest.raises(NotFound, match="no alias 'canary'"):
        find_baseline(runtime.store, home, "qa", "ft@canary")
    await runtime.close()


async def test_prompt_at_label_finds_the_newest_run_rendered_from_that_prompt_version(tmp_path: Path) -> None:
    runtime = Runtime(fake_settings(tmp_path / "home"))
    assert runtime.store is not None
    prompts = PromptRegistry(runtime.store)
    messages = [{"role": "user", "content": "{{ q }} please"}]
    v1, _ = prompts.create("support", ME, kind="chat", template=messages)
    prompts.labels.set("support", "production", v1.version, ME)
    suite = write_suite(tmp_path, "qa", "{model: fake, prompt: support@production}")
    (tmp_path / "cases.jsonl").write_text(
        json.dumps({"id": "a", "vars": {"q": "question"}, "expected": "q"}) + "\n"
    )
    first = await run_suite(runtime, suite)
    v2, _ = prompts.create("support", ME, kind="chat", template=[{"role": "user", "content": "{{ q }}!"}])
    prompts.labels.set("support", "production", v2.version, ME)
    assert runtime.prompts is not None
    runtime.prompts.forget("support")  # as a promotion through this worker does
    second = await run_suite(runtime, suite)

    home = runtime.settings.home
    assert find_baseline(runtime.store, home, "qa", "support@production").run.id == second
    assert find_baseline(runtime.store, home, "qa", "prompt:support/1").run.id == first
    with pytest.raises(NotFound, match="answered by prompt support version 2"):
        find_baseline(runtime.store, home, "other", "support@production")
    await runtime.close()


def test_a_name_in_both_registries_must_say_which_and_an_unknown_one_is_named(tmp_path: Path) -> None:
    runtime = Runtime(fake_settings(tmp_path / "home"))
    assert runtime.store is not None
    register(runtime, tmp_path, b"w", "production")
    PromptRegistry(runtime.store).create("ft", ME, kind="chat", template=[{"role": "user", "content": "hi"}])
    with pytest.raises(InvalidRequest, match="write model:ft@production or prompt:ft@production"):
        find_baseline(runtime.store, runtime.settings.home, "qa", "ft@production")
    with pytest.raises(NotFound, match="neither a run id nor a registered model or prompt"):
        find_baseline(runtime.store, runtime.settings.home, "qa", "nobody@production")
    with pytest.raises(NotFound, match="no evaluation run"):
        find_baseline(runtime.store, runtime.settings.home, "qa", "0123abcd")
