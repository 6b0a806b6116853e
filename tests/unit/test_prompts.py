"""The prompt registry and the model registry, without a gateway: versions, labels, audit, rendering, CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.config import Settings
from llmdock.errors import ConfigError, Conflict, InvalidRequest, NotFound
from llmdock.prompts import PromptCall, PromptRegistry, PromptResolver, ResolvedPrompt, apply_prompt, render
from llmdock.registry import ModelRegistry, parse_uri
from llmdock.registry.artifacts import artifact_path, verify
from llmdock.store import Store, audit
from llmdock.store.audit import Actor

ME = Actor("tester", "pytest")
CHAT = [
    {"role": "system", "content": "You help with {{ product }}."},
    {"role": "user", "content": "{{ question }}"},
]


@pytest.fixture
def store(make_settings: Callable[..., Settings]) -> Store:
    return Store(make_settings().resolved_database_url())


def test_versions_are_numbered_immutable_and_content_deduplicated(store: Store) -> None:
    reg = PromptRegistry(store)
    v1, new1 = reg.create("support", ME, kind="chat", template=CHAT, config={"temperature": 0.2})
    again, new_again = reg.create("support", ME, kind="chat", template=CHAT, config={"temperature": 0.2})
    v2, new2 = reg.create("support", ME, kind="chat", template=CHAT, config={"temperature": 0.5})
    assert (v1.version, new1, again.version, new_again, v2.version, new2) == (1, True, 1, False, 2, True)
    assert v1.variables == ["product", "question"]
    # Without labels a request gets the latest; once 'production' is set, that one.
    assert reg.get("support").version == 2
    reg.labels.set("support", "production", 1, ME)
    assert reg.get("support").version == 1
    assert reg.get("support", label="latest").version == 2
    assert reg.get("support", version=2).config == {"temperature": 0.5}
    with pytest.raises(NotFound, match="no version 7"):
        reg.get("support", version=7)
    with pytest.raises(NotFound, match="no label 'staging'"):
        reg.get("support", label="staging")
    with pytest.raises(NotFound, match="no prompt 'nope'"):
        reg.get("nope")


def test_promotion_and_rollback_are_audited_before_and_after(store: Store) -> None:
    reg = PromptRegistry(store)
    for temp in (0.1, 0.2, 0.3):
        reg.create("p", ME, kind="text", template="Say {{ x }}", config={"temperature": temp})
    assert reg.labels.set("p", "production", 1, ME) is None
    assert reg.labels.set("p", "production", 3, ME) == 1
    assert reg.labels.set("p", "production", 2, ME) == 3
    assert reg.labels.rollback("p", "production", ME) == 3
    assert reg.labels.rollback("p", "production", ME) == 1
    with pytest.raises(Conflict, match="no earlier version"):
        reg.labels.rollback("p", "production", ME)
    with pytest.raises(NotFound):
        reg.labels.set("p", "production", 9, ME)
    with pytest.raises(InvalidRequest, match="latest"):
        reg.labels.set("p", "latest", 1, ME)
    moves = [(r.action, r.target, r.before, r.after) for r in reversed(audit.list_rows(store, limit=100))]
    assert [m for m in moves if m[0] != "prompt.create"] == [
        ("prompt.promote", "p@production", None, {"version": 1}),
        ("prompt.promote", "p@production", {"version": 1}, {"version": 3}),
        ("prompt.promote", "p@production", {"version": 3}, {"version": 2}),
        ("prompt.rollback", "p@production", {"version": 2}, {"version": 3}),
        ("prompt.rollback", "p@production", {"version": 3}, {"version": 1}),
    ]
    assert {r.actor for r in audit.list_rows(store)} == {"tester"}
    assert audit.verify(store).ok


@pytest.mark.parametrize(
    ("kind", "template", "config", "param"),
    [
        ("chat", [{"role": "wizard", "content": "x"}], {}, "messages.0.role"),
        ("chat", [{"role": "user", "content": "{{ x "}], {}, "messages.0.content"),
        ("chat", [], {}, "messages"),
        ("text", "ok", {"temperature": 9}, "config.temperature"),
        ("text", "ok", {"colour": "red"}, "config.colour"),
        ("poem", "ok", {}, "kind"),
    ],
)
def test_bad_templates_name_the_field(
    store: Store, kind: str, template: Any, config: Any, param: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        PromptRegistry(store).create("bad", ME, kind=kind, template=template, config=config)
    assert err.value.param == param
    assert PromptRegistry(store).names() == []  # nothing half-saved


def test_rendering_is_sandboxed_and_strict() -> None:
    assert render("text", "Hi {{ name | upper }}", {"name": "ada"}, "t/1") == "Hi ADA"
    with pytest.raises(InvalidRequest, match="'name' is undefined"):
        render("text", "Hi {{ name }}", {}, "t/1")
    with pytest.raises(InvalidRequest, match="sandbox|unsafe|undefined"):
        render("text", "{{ x.__class__.__mro__[1].__subclasses__() }}", {"x": "a"}, "t/1")
    with pytest.raises(InvalidRequest):
        render("text", "{{ items.append(1) }}", {"items": []}, "t/1")  # values passed in are immutable


def test_apply_puts_the_template_first_and_fills_unset_sampling_values() -> None:
    resolved = ResolvedPrompt(
        "support",
        2,
        "chat",
        CHAT,
        ("product", "question"),
        {"model": "m", "temperature": 0.2, "stop": ["##"]},
    )
    call = PromptCall(resolved, {"product": "llmdock", "question": "what?"}, "production")
    req = GenerationRequest(
        "chat", SamplingParams(temperature=0.9), messages=[{"role": "user", "content": "follow-up"}]
    )
    apply_prompt(call, req)
    assert req.messages == [
        {"role": "system", "content": "You help with llmdock."},
        {"role": "user", "content": "what?"},
        {"role": "user", "content": "follow-up"},
    ]
    assert req.params.temperature == 0.9  # the request's own value wins
    assert req.params.stop == ["##"]
    assert call.attributes() == {
        "llmdock.prompt_template": "support",
        "llmdock.prompt_version": 2,
        "llmdock.prompt_label": "production",
    }
    completion = GenerationRequest("completion", SamplingParams(), prompt="")
    with pytest.raises(InvalidRequest, match="chat template"):
        apply_prompt(call, completion)


async def test_resolver_caches_until_the_ttl_or_a_local_promotion(store: Store) -> None:
    reg = PromptRegistry(store)
    reg.create("c", ME, kind="text", template="one")
    reg.create("c", ME, kind="text", template="two")
    reg.labels.set("c", "production", 1, ME)
    resolver = PromptResolver(reg, ttl=3600)
    assert (await resolver.resolve("c", None, None)).version == 1
    reg.labels.set("c", "production", 2, ME)
    assert (await resolver.resolve("c", None, None)).version == 1  # cached
    resolver.forget("c")
    assert (await resolver.resolve("c", None, None)).version == 2
    assert (await PromptResolver(reg, ttl=0).resolve("c", 1, None)).template == "one"


def test_model_registry_stores_content_addressed_artifacts(store: Store, tmp_path: Path) -> None:
    home = tmp_path / "home"
    reg = ModelRegistry(store, home)
    weights = tmp_path / "w.gguf"
    weights.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    v1 = reg.register("tiny", weights, ME, lineage={"base_model": "smollm2", "dataset": "ds@abc"})
    v2 = reg.register("tiny", weights, ME, metrics={"bleu": 0.3})
    assert (v1.version, v2.version, v1.artifact) == (1, 2, v2.artifact)
    stored = artifact_path(home, v1.artifact)
    assert stored.read_bytes() == weights.read_bytes()
    assert verify(home, v1.artifact)
    assert [p.name for p in stored.parent.iterdir()] == [v1.artifact]  # one copy, no temporary left over
    reg.labels.set("tiny", "production", 1, ME)
    assert reg.resolve("models:/tiny@production")[1].version == 1
    assert reg.resolve("models:/tiny")[1].version == 2
    assert reg.resolve("models:/tiny/2")[0] == stored
    assert parse_uri("models:/tiny/2").version == 2
    with pytest.raises(NotFound, match="no alias 'staging'"):
        reg.resolve("models:/tiny@staging")
    with pytest.raises(NotFound, match="no model 'other'"):
        reg.resolve("models:/other")
    actions = [r.action for r in audit.list_rows(store)]
    assert actions.count("model.create") == 2
    assert "model.promote" in actions
    created = audit.list_rows(store, action="model.create")[-1]
    assert created.after is not None
    assert created.after["lineage"] == {
        "base_model": "smollm2",
        "dataset": "ds@abc",
    }


def test_a_directory_is_registered_by_its_content_and_checked_file_by_file(
    store: Store, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    reg = ModelRegistry(store, home)
    adapter = tmp_path / "adapter"
    (adapter / "sub").mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    v1 = reg.register("tuned", adapter, ME)
    (adapter / "adapter_config.json").touch()  # a new date, the same content: the same address
    v2 = reg.register("tuned", adapter, ME)
    assert (v1.artifact, v1.format, v1.size) == (v2.artifact, "directory", 2568)
    stored = reg.resolve("models:/tuned/1")[0]
    assert stored.is_dir()
    assert (stored / "sub" / "weights.bin").read_bytes() == (adapter / "sub" / "weights.bin").read_bytes()
    assert verify(home, v1.artifact)
    assert sorted(p.name for p in stored.parent.iterdir()) == [v1.artifact]  # no temporary left over
    (adapter / "sub" / "weights.bin").rename(adapter / "weights.bin")  # the same bytes elsewhere: a new tree
    assert reg.register("tuned", adapter, ME).artifact != v1.artifact
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidRequest, match="holds no files"):
        reg.register("tuned", tmp_path / "empty", ME)
    (adapter / "link").symlink_to(adapter / "weights.bin")
    with pytest.raises(InvalidRequest, match="symbolic link"):
        reg.register("tuned", adapter, ME)


def test_cli_push_names_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmdock.cli.main import app

    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path / "home"))
    good = tmp_path / "support.yaml"
    good.write_text(
        "name: support\nmessages:\n  - {role: system, content: 'About {{ product }}.'}\n"
        "  - {role: user, content: '{{ question }}'}\nconfig: {temperature: 0.2}\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nmessages:\n  - {role: user, content: ok}\n  - {role: wizard, content: x}\n")
    runner = CliRunner()
    first = runner.invoke(app, ["prompts", "push", str(good), "--label", "production"])
    assert first.exit_code == 0, first.output
    assert "new version 1 → production" in first.output
    assert "unchanged, still version 1" in runner.invoke(app, ["prompts", "push", str(good)]).output
    out = runner.invoke(app, ["prompts", "render", "support", "--var", "product=x", "--var", "question=y?"])
    assert '"content": "About x."' in out.output
    failed = runner.invoke(app, ["prompts", "push", str(bad)])
    assert failed.exit_code != 0
    assert isinstance(failed.exception, ConfigError)
    assert failed.exception.one_line().startswith(f"{bad}:4: messages.1.role: role must be one of")
