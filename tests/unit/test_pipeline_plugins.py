"""The stage contract and plugin registration: a new stage is one class plus one hook, no core edit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmdock.backends.base import GenerationRequest, SamplingParams, StreamChunk
from llmdock.config import Settings
from llmdock.default_plugins import DEFAULT_PLUGINS
from llmdock.errors import ConfigError
from llmdock.hookspecs import StageFactory, hookimpl
from llmdock.pipeline import RequestContext, StageEnv
from llmdock.plugins import load_plugins
from llmdock.runtime import Runtime
from tests.conftest import fake_settings


class ShoutStage:
    """Upper-cases the answer, streamed or not."""

    name = "shout"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env: StageEnv | None = None

    def bind(self, env: StageEnv) -> None:
        self.env = env

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        if ctx.generation is not None and not ctx.stream:
            ctx.generation.text = ctx.generation.text.upper()
        ctx.annotate(shouted=True)
        return ctx

    async def wrap_stream(
        self, ctx: RequestContext, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        async for chunk in chunks:
            yield StreamChunk(chunk.text.upper(), chunk.finish_reason)


class ShoutPlugin:
    @hookimpl
    def llmdock_stages(self) -> dict[str, StageFactory]:
        return {"shout": ShoutStage}


class NoBindStage:
    name = "nobind"

    def __init__(self, settings: Settings) -> None:
        pass

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        return ctx


class NoBindPlugin:
    @hookimpl
    def llmdock_stages(self) -> dict[str, StageFactory]:
        return {"nobind": NoBindStage}  # type: ignore[dict-item]


def test_builtins_are_registered_through_the_same_hooks() -> None:
    plugins = load_plugins()
    assert set(DEFAULT_PLUGINS) <= set(plugins.names)
    assert {"llamacpp", "openai_compat", "fake", "sentence_transformers"} <= set(plugins.backends)
    assert {"preprocess", "generate", "postprocess", "cache", "guard_in", "guard_out", "structured"} <= set(
        plugins.stages
    )
    assert {"injection", "pii", "secrets", "toxicity"} <= set(plugins.detectors)


def test_a_stage_is_bound_to_the_narrow_environment_not_the_runtime(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    (shout,) = [s for s in runtime.pipeline.stages if isinstance(s, ShoutStage)]
    assert isinstance(shout.env, StageEnv)
    assert shout.env.backend("fake") is runtime.backend("fake")
    assert shout.env.store is runtime.store
    assert "injection" in shout.env.plugins("detectors")


def test_a_stage_without_bind_is_a_config_error(tmp_path: Path) -> None:
    settings = fake_settings(tmp_path, pipeline=["preprocess", "generate", "nobind", "postprocess"])
    with pytest.raises(ConfigError, match=r"stage 'nobind' .*bind"):
        Runtime(settings, plugins=load_plugins(extra=[NoBindPlugin()]))


def _runtime(tmp_path: Path) -> Runtime:
    settings = fake_settings(tmp_path, pipeline=["preprocess", "generate", "shout", "postprocess"])
    return Runtime(settings, plugins=load_plugins(extra=[ShoutPlugin()]))


def _ctx(runtime: Runtime, stream: bool) -> RequestContext:
    req = GenerationRequest("chat", SamplingParams(), messages=[{"role": "user", "content": "hi"}])
    return RequestContext("chat", "fake", runtime.backend("fake"), request=req, stream=stream)


async def test_a_plugin_stage_runs_where_the_config_puts_it(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    ctx = await runtime.pipeline.run(_ctx(runtime, stream=False))
    assert ctx.output_text == "FAKE ANSWER TO: HI"
    assert [s.name for s in ctx.spans] == ["preprocess", "generate", "shout", "postprocess"]
    assert ctx.spans[2].attributes == {"shouted": True}
    await runtime.close()


async def test_a_plugin_stage_wraps_the_stream(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    seen: list[RequestContext] = []
    runtime.pipeline.sink = seen.append
    chunks = await runtime.pipeline.prepare_stream(_ctx(runtime, stream=True))
    text = "".join([c.text async for c in chunks])
    assert text == "FAKE ANSWER TO: HI"
    (ctx,) = seen
    # stages after generate that do not wrap streams run once it ended; wrapping ones ran inline
    assert [s.name for s in ctx.spans] == ["preprocess", "generate", "postprocess"]
    assert ctx.spans[1].attributes["stream"] is True
    await runtime.close()
