"""Summarising memory (fake models): the turns a session's window no longer holds are summarised after the
answer, not before it, and the next request gets the summary instead of the turns it covers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.config import ModelConfig
from llmdock.pipeline.context import RequestContext
from llmdock.privacy.gdpr import erase_subject, export_subject
from llmdock.rag.memory import MemoryStage, load_turns
from llmdock.rag.summary import load_summary
from llmdock.store.audit import Actor
from tests.conftest import Gateway, fake_settings

SUMMARY = "The user counted turns one to three."
MODELS = {
    "small": ModelConfig(backend="fake", context_window=80),  # the fake model counts words as tokens
    "summariser": ModelConfig(backend="fake", reply=SUMMARY, delay_s=0.3),
}


@pytest.fixture
async def gw(tmp_path: Path, gateway_factory: Callable[..., Any]) -> Gateway:
    settings = fake_settings(
        tmp_path, models=MODELS, pipeline=["preprocess", "memory", "generate", "postprocess"]
    )
    settings.rag.memory_summary_model = "summariser"
    settings.default_model = "small"
    gateway: Gateway = await gateway_factory(settings)
    return gateway


async def chat(gw: Gateway, text: str) -> None:
    r = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "small", "messages": [{"role": "user", "content": text}], "user": "ada"},
        headers={"x-llmdock-session": "long"},
    )
    assert r.status_code == 200, r.text


def stage_of(gw: Gateway) -> MemoryStage:
    return next(s for s in gw.runtime.pipeline.stages if isinstance(s, MemoryStage))


async def test_dropped_turns_are_summarised_after_the_answer_and_sent_instead(gw: Gateway) -> None:
    store, stage = gw.runtime.store, stage_of(gw)
    assert store is not None
    for n in (1, 2):
        await chat(gw, f"turn {n} word")  # an exchange is 25 tokens; 40 of the window's 80 go to history
        await stage.settle()
    assert load_summary(store, "", "long") is None  # one exchange before turn 2: nothing was dropped
    await chat(gw, "turn 3 word")  # two before it: the oldest is dropped, and summarised later
    assert load_summary(store, "", "long") is None  # answered without waiting for the summary
    assert stage._summarising  # the summariser (0.3 s) is still at work
    await stage.settle()
    found = load_summary(store, "", "long")
    assert found is not None
    turns = load_turns(store, "", "long", 20)
    assert found == (SUMMARY, turns[1].id)  # it covers turn 1's exchange, up to its answer
    req = GenerationRequest(
        "chat",
        SamplingParams(max_tokens=10),
        messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "And now?"}],
    )
    ctx = RequestContext("chat", "small", gw.runtime.backend("small"), request=req)
    ctx.session = "long"
    await stage(ctx)
    contents = [m["content"] for m in req.messages or []]
    assert contents[0] == f"You are terse.\n\nSummary of the earlier conversation: {SUMMARY}"
    assert "turn 1 word" not in " ".join(contents)  # the summarised turns are not sent again
    assert contents[-3:] == ["turn 3 word", "fake answer to: turn 3 word", "And now?"]
    assert ctx._span_attrs["llmdock.memory.summary"] is True  # on the memory span of the trace
    assert req.n_prompt_tokens + 10 <= 80


async def test_a_summary_is_exported_and_erased_with_its_subject(gw: Gateway) -> None:
    stage = stage_of(gw)
    for n in (1, 2, 3, 4):
        await chat(gw, f"turn {n} word")
        await stage.settle()
    store, secret = gw.runtime.store, gw.runtime.auth.secret
    assert store is not None
    actor = Actor("test", "pytest")
    exported = export_subject(store, "ada", actor, secret)["memory"]
    # turn 3 dropped turn 1, turn 4 (with the summary in its window) turn 2: two summaries
    assert [m["content"] for m in exported if m["role"] == "summary"] == [SUMMARY, SUMMARY]
    assert erase_subject(store, "ada", actor, secret)["memory_turns_deleted"] == 4 * 2 + 2
    assert load_summary(store, "", "long") is None
