"""The ground stage through the gateway (fake models): sources numbered in the prompt, citations on the
answer, hits on the trace, and retrieved text checked by the input guards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmdock.config import ModelConfig
from llmdock.rag import bases
from llmdock.rag.ingest import Ingest
from llmdock.runtime import Runtime
from llmdock.store.traces import get_trace
from tests.conftest import fake_settings

MODELS = {
    "fake": ModelConfig(backend="fake"),  # answers with the last user turn: the prompt the stage built
    "fake-kb": ModelConfig(backend="fake", knowledge_base="docs"),
    "fake-embed": ModelConfig(backend="fake", task="embedding"),
}
PIPELINE = ["preprocess", "ground", "guard_in", "generate", "postprocess"]


async def _ingest(tmp_path: Path, files: dict[str, str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in files.items():
        (docs / name).write_text(text)
    rt = Runtime(fake_settings(tmp_path, models=MODELS))
    assert rt.store is not None
    await Ingest(rt.stage_env, rt.store, bases.create(rt.store, "docs", "fake-embed")).run([docs])
    glossary = {"frobnicator": "A machine that frobs."}
    bases.set_glossary(rt.store, bases.get(rt.store, "docs").id, glossary)
    await rt.close()


async def test_a_grounded_answer_cites_its_numbered_sources(
    tmp_path: Path, gateway_factory: Callable[..., Any]
) -> None:
    await _ingest(
        tmp_path,
        {
            "install.md": "# Install\n\nRun the frobnicator installer twice.\n",
            "other.txt": "Bananas are yellow.\n",
        },
    )
    settings = fake_settings(tmp_path, models=MODELS, pipeline=PIPELINE, guards={"input": {"secrets": {}}})
    settings.rag.top_k = 1
    settings.rag.mode = "bm25"
    gw = await gateway_factory(settings)
    r = await gw.client.post(
        "/v1/chat/completions",
        json={
            "model": "fake-kb",
            "messages": [{"role": "user", "content": "How do I install the frobnicator?"}],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    [citation] = body["citations"]
    assert citation["source"].endswith("install.md")
    prompt = body["choices"][0]["message"]["content"]  # the fake model repeats it
    assert "[1] Install" in prompt
    assert "Run the frobnicator installer twice." in prompt
    assert "frobnicator: A machine that frobs." in prompt  # the glossary term in the question, linked
    assert prompt.endswith("Question: How do I install the frobnicator?")
    gw.flush_traces()
    _, spans = get_trace(gw.runtime.store, body["id"].removeprefix("chatcmpl-"))
    [ground] = [s for s in spans if s.name == "ground"]
    assert ground.attributes["llmdock.ground.kb"] == "docs"
    [hit] = ground.attributes["llmdock.ground.hits"]
    assert hit["chunk"] == citation["chunk"]
    assert hit["scores"]["bm25"] > 0
    plain = await gw.client.post(
        "/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert "citations" not in plain.json()  # a model without a knowledge base is not grounded
    streamed = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "fake-kb", "stream": True, "messages": [{"role": "user", "content": "frobnicator?"}]},
    )
    first = json.loads(streamed.text.split("\n\n")[0].removeprefix("data: "))
    assert first["citations"][0]["source"].endswith("install.md")  # the first event carries them


async def test_a_secret_planted_in_a_document_is_blocked_by_the_input_guards(
    tmp_path: Path, gateway_factory: Callable[..., Any]
) -> None:
    await _ingest(
        tmp_path, {"leak.txt": "Deploy notes: the key is AKIAIOSFODNN7EXAMPLE for the deploy bucket.\n"}
    )
    guards = {"input": {"secrets": {"action": "block"}}}
    gw = await gateway_factory(fake_settings(tmp_path, models=MODELS, pipeline=PIPELINE, guards=guards))
    r = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "fake-kb", "messages": [{"role": "user", "content": "What are the deploy notes?"}]},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "content_policy"
