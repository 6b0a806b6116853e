"""The prompt SDK on the local store, its cache, and its fallback to a known-good copy when a refresh fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llmdock import prompts
from llmdock.errors import NotFound
from llmdock.prompts import client as sdk
from llmdock.store import Store
from llmdock.store.audit import Actor

ADMIN = Actor("test", "pytest")


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    prompts.clear_cache()
    yield
    prompts.clear_cache()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    db = tmp_path / "store.db"
    path = tmp_path / "llmdock.yaml"
    path.write_text(f"database_url: sqlite:///{db}\n")
    store = Store(f"sqlite:///{db}")
    store.migrate()
    reg = prompts.PromptRegistry(store)
    reg.create("greet", ADMIN, kind="chat", template=[{"role": "user", "content": "Hello {{ who }}"}])
    reg.create("greet", ADMIN, kind="chat", template=[{"role": "user", "content": "Hi {{ who }}!"}])
    reg.labels.set("greet", "production", 1, ADMIN)
    reg.create("line", ADMIN, kind="text", template="Q: {{ q }}\nA:")
    store.close()
    return path


def test_get_renders_from_the_local_store(config: Path) -> None:
    greet = prompts.get("greet", config=config)
    assert (greet.name, greet.version, greet.labels) == ("greet", 1, ("production",))
    assert greet.render(who="Ada") == [{"role": "user", "content": "Hello Ada"}]
    assert prompts.get("greet", label="latest", config=config).render(who="Ada")[0]["content"] == "Hi Ada!"
    assert prompts.get("line", config=config).render(q="why?") == "Q: why?\nA:"
    with pytest.raises(NotFound):
        prompts.get("nope", config=config)
    with pytest.raises(Exception, match="who"):
        greet.render()


def test_cached_for_ttl_and_a_failed_refresh_keeps_the_last_good_copy(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    good = prompts.get("greet", config=config)

    def fetch(url: str, name: str, *args: object) -> prompts.Prompt:
        calls.append(url)
        if len(calls) > 1:
            raise httpx.ConnectError("gateway down")
        return good

    monkeypatch.setattr(sdk, "_fetch", fetch)
    first = prompts.get("greet", base_url="http://gw:1", ttl=60)
    assert prompts.get("greet", base_url="http://gw:1", ttl=60) is first
    assert calls == ["http://gw:1"]  # the second call came from the cache
    assert prompts.get("greet", base_url="http://gw:1", ttl=0) is first  # refresh failed: the last good copy
    assert len(calls) == 2
    with pytest.raises(httpx.ConnectError):  # nothing known for this name: the failure is the caller's
        prompts.get("other", base_url="http://gw:1", ttl=0)


def test_render_adds_the_same_features_as_the_gateway(config: Path) -> None:
    from llmdock.store import Store

    store = Store(f"sqlite:///{config.parent / 'store.db'}")
    prompts.PromptRegistry(store).create(
        "shots",
        ADMIN,
        kind="chat",
        template=[{"role": "user", "content": "{{ q }}"}],
        config={"examples": [{"user": "2+2?", "assistant": "4"}], "reasoning": True},
    )
    store.close()
    messages = prompts.get("shots", config=config).render(q="3+3?")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1:] == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
    ]
    assert prompts.split_reasoning("<reasoning>3+3</reasoning> 6") == ("3+3", "6")
