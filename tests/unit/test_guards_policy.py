"""Guard policy files: every mistake stops llmdock with the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.config import load_settings
from llmdock.errors import ConfigError
from llmdock.guards.policy import api_key_namespace
from llmdock.runtime import Runtime
from tests.unit.test_guards import guard_model_dir

HEAD = """include_builtin_models: false
models:
  fake: {backend: fake}
default_model: fake
default_embedding_model: ""
pipeline: [preprocess, guard_in, generate, guard_out, postprocess]
"""


def start(tmp_path: Path, guards: str) -> Runtime:
    path = tmp_path / "llmdock.yaml"
    path.write_text(HEAD + f"guards:\n  model_dir: {guard_model_dir()}\n" + guards)
    return Runtime(load_settings(path, home=tmp_path), with_store=False)


def error(tmp_path: Path, guards: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        start(tmp_path, guards)
    return info.value


def test_an_unknown_detector_names_its_line_and_the_known_ones(tmp_path: Path) -> None:
    err = error(tmp_path, "  input:\n    injection: {}\n    telepathy: {action: block}\n")
    assert err.where == f"{tmp_path / 'llmdock.yaml'}:11: guards.input.telepathy"
    assert "unknown detector 'telepathy'" in err.message
    assert "injection" in err.message


def test_a_threshold_out_of_range_names_the_field(tmp_path: Path) -> None:
    err = error(tmp_path, "  input:\n    injection:\n      threshold: 1.5\n")
    assert err.where == f"{tmp_path / 'llmdock.yaml'}:11: guards.input.injection.threshold"
    assert "less than or equal to 1" in err.message


def test_a_bad_action_and_a_bad_detector_parameter_are_refused(tmp_path: Path) -> None:
    assert error(tmp_path, "  input:\n    secrets: {action: shout}\n").where.endswith(
        "guards.input.secrets.action"
    )  # type: ignore[union-attr]
    err = error(tmp_path, "  input:\n    prompt_length: {max_chars: -3}\n")
    assert err.where == f"{tmp_path / 'llmdock.yaml'}:10: guards.input.prompt_length.max_chars"


def test_a_detector_in_the_wrong_direction_is_refused(tmp_path: Path) -> None:
    err = error(tmp_path, "  output:\n    injection: {}\n")
    assert "does not check output" in err.message


def test_an_override_is_checked_like_the_base_policy(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        "  policies:\n    - match: {model: fake}\n      input:\n        injection: {threshold: -1}\n",
    )
    assert err.where == f"{tmp_path / 'llmdock.yaml'}:12: guards.policies.0.input.injection.threshold"


def test_an_api_key_variable_that_is_not_set_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, "  policies:\n    - match: {api_key_env: NOT_SET_ANYWHERE}\n      input: {}\n")
    assert "NOT_SET_ANYWHERE is not set" in err.message


def test_a_separate_policy_file_is_validated_with_its_own_lines(tmp_path: Path) -> None:
    policy = tmp_path / "guards.yaml"
    policy.write_text("block_message: Refused.\ninput:\n  injection:\n    action: block\n    threshold: 7\n")
    err = error(tmp_path, f"  policy_file: {policy}\n")
    assert err.where == f"{policy}:5: input.injection.threshold"
    policy.write_text("input:\n  injection: {action: flag}\n  regex: {keywords: [forbidden]}\n")
    runtime = start(tmp_path, f"  policy_file: {policy}\n")
    stage = runtime.pipeline.stages[1]
    assert set(stage.policies.base["input"]) == {"injection", "regex"}  # type: ignore[attr-defined]


def test_an_api_key_namespace_matches_the_gateways_tenant_hash() -> None:
    from starlette.requests import Request

    from llmdock.gateway.inference import tenant_namespace

    scope = {"type": "http", "headers": [(b"authorization", b"Bearer sk-123")]}
    assert api_key_namespace("sk-123") == tenant_namespace(Request(scope), None)


def test_an_unknown_pii_entity_names_the_detector_entry(tmp_path: Path) -> None:
    err = error(tmp_path, "  input:\n    pii: {entities: [EMAIL_ADDRESS, SHOE_SIZE]}\n")
    assert err.where == f"{tmp_path / 'llmdock.yaml'}:10: guards.input.pii"
    assert "SHOE_SIZE" in err.message


async def test_redacting_pii_keeps_it_from_the_model(tmp_path: Path) -> None:
    from tests.unit.test_guards import chat

    path = tmp_path / "llmdock.yaml"
    path.write_text(
        HEAD + f"guards:\n  model_dir: {guard_model_dir()}\n  input:\n    pii: {{action: redact}}\n"
    )
    runtime = Runtime(load_settings(path, home=tmp_path), with_store=False)
    import httpx

    from llmdock.gateway import create_app

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://gw"
    ) as client:
        resp = await client.post("/v1/chat/completions", json=chat("write to jane.doe@example.com"))
    assert resp.json()["choices"][0]["message"]["content"] == "fake answer to: write to [EMAIL-ADDRESS]"
    await runtime.close()


def test_overrides_match_a_prompt_template_and_an_api_key_id(tmp_path: Path) -> None:
    from llmdock.pipeline import RequestContext

    runtime = start(
        tmp_path,
        "  policies:\n"
        "    - match: {prompt_template: support-bot}\n      input: {injection: {action: log}}\n"
        "    - match: {api_key_id: key-42}\n      input: {toxicity: null}\n",
    )
    stage = runtime.pipeline.stages[1]

    def resolved(**fields: str) -> dict[str, str]:
        ctx = RequestContext("chat", "fake", runtime.backend("fake"))
        template = fields.pop("template", "")
        if template:
            ctx.attributes["llmdock.prompt_template"] = template  # what the prompt-template registry sets
        for name, value in fields.items():
            setattr(ctx, name, value)
        return {e.name: e.policy.action for e in stage.policies.resolve(ctx)["input"]}  # type: ignore[attr-defined]

    assert resolved()["injection"] == "block"
    assert resolved(template="support-bot")["injection"] == "log"
    assert "toxicity" not in resolved(api_key_id="key-42")
    assert "toxicity" in resolved(api_key_id="key-7")
