"""Following registry aliases without a server: a backend that serves registered versions (its bytes are its
answer, "broken" cannot load) behind a real route. The switch waits for nothing, the old version closes only
after its last request, a failed load keeps the old one and is not retried until the alias moves, and
variant routes come and go as asked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.backends.fake import FakeBackend, FakeParams
from llmdock.backends.model_files import resolve_model_file
from llmdock.config import ModelConfig, Settings
from llmdock.errors import ConfigError
from llmdock.registry.models import ModelRegistry
from llmdock.routing.build import build_route
from llmdock.routing.follow import RegistryFollow
from llmdock.store import Store
from llmdock.store.audit import Actor

ME = Actor("test", "pytest")


class RegisteredParams(FakeParams):
    model_path: str


class RegisteredBackend(FakeBackend):
    """Answers with the registered file's text; counts its loads and whether it was closed."""

    kind = "registered"
    Params = RegisteredParams
    params: RegisteredParams
    loads = 0

    async def start(self) -> None:
        RegisteredBackend.loads += 1
        path, self.origin = resolve_model_file(self.params.model_path, self.settings, where="model_path")
        text = path.read_text()
        if text == "broken":
            raise ConfigError(f"cannot load model {str(path)!r}: not a model", where="model_path")
        self.params = self.params.model_copy(update={"reply": text})
        self.closed = False
        self.loaded = True

    async def close(self) -> None:
        self.closed = True


def setup(tmp_path: Path) -> tuple[ModelRegistry, RegistryFollow, Settings]:
    settings = Settings(home=tmp_path, include_builtin_models=False, models={}, default_model="",
                        default_embedding_model="")  # fmt: skip
    registry = ModelRegistry(Store(settings.resolved_database_url()), tmp_path)
    for text in ("one", "two", "broken"):
        (tmp_path / "m.bin").write_text(text)
        registry.register("m", tmp_path / "m.bin", ME, progress=False)
    registry.labels.set("m", "production", 1, ME)
    config = ModelConfig(backend="registered", model_path="models:/m@production")
    routes = {"assistant": build_route("assistant", config, settings, {"registered": RegisteredBackend})}
    return registry, RegistryFollow(routes, registry.store), settings


async def answer(follow: RegistryFollow, model: str = "assistant") -> str:
    req = GenerationRequest("completion", SamplingParams(), prompt="hi")
    route = follow.routes[model]
    route.prepare(req)
    return (await route.generate(req)).text


async def test_a_moved_alias_is_served_and_the_old_version_closes_after_its_last_request(
    tmp_path: Path,
) -> None:
    registry, follow, _ = setup(tmp_path)
    await follow.routes["assistant"].start()
    assert await answer(follow) == "one"
    old = follow.routes["assistant"].deployments[0].backend
    old.admit()  # a request still running on version 1
    registry.labels.set("m", "production", 2, ME)
    await follow.apply(follow.read())
    assert await answer(follow) == "two"
    assert follow.status()["assistant"]["serving"] == "m/2"
    await asyncio.sleep(0.2)
    assert not old.closed  # type: ignore[attr-defined]
    old.release()
    await asyncio.sleep(0.2)
    assert old.closed  # type: ignore[attr-defined]

    registry.labels.set("m", "production", 3, ME)
    loads = RegisteredBackend.loads
    for _ in range(3):
        await follow.apply(follow.read())
    assert RegisteredBackend.loads == loads + 1  # tried once: not again until the alias moves
    state = follow.status()["assistant"]
    assert (state["serving"], state["failed"]) == ("m/2", "m/3")
    assert "not a model" in state["error"]
    assert await answer(follow) == "two"  # the old version serves on
    registry.labels.set("m", "production", 1, ME)
    await follow.apply(follow.read())
    assert (await answer(follow), follow.status()["assistant"]["error"]) == ("one", "")


async def test_variant_routes_load_beside_and_go_when_no_longer_wanted(tmp_path: Path) -> None:
    _, follow, _ = setup(tmp_path)
    await follow.routes["assistant"].start()
    follow.want(
        {"assistant@release": ("assistant", "models:/m/2"), "bad@release": ("assistant", "models:/m/3")}
    )
    for _ in range(50):
        if "assistant@release" in follow.routes and follow.status()["bad@release"]["state"] == "failed":
            break
        await asyncio.sleep(0.02)
    assert await answer(follow, "assistant@release") == "two"
    assert await answer(follow) == "one"
    assert "bad@release" not in follow.routes
    assert "not a model" in follow.status()["bad@release"]["error"]
    challenger = follow.routes["assistant@release"].deployments[0].backend
    follow.want({})
    await asyncio.sleep(0.1)
    assert set(follow.routes) == {"assistant"}
    assert challenger.closed  # type: ignore[attr-defined]
    assert set(follow.status()) == {"assistant"}  # the variants are gone from /ready too
