"""Conversation memory (the memory stage, fake models): a session's turns come back before the new question,
trimmed oldest-first to the model's window, scoped to the session and its team, sealed at rest with
``privacy.encrypt_bodies``, and erased with the subject."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.config import ModelConfig
from llmdock.pipeline.context import RequestContext
from llmdock.privacy.crypto import new_key
from llmdock.privacy.gdpr import erase_session, erase_subject, export_subject
from llmdock.rag.memory import MemoryStage, load_turns
from llmdock.rag.summary import load_summary, save_summary
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from llmdock.store.keyring import is_sealed
from tests.conftest import Gateway, fake_settings

MODELS = {
    "fake": ModelConfig(backend="fake"),
    "small": ModelConfig(backend="fake", context_window=80),  # the fake model counts words as tokens
}
PIPELINE = ["preprocess", "memory", "generate", "postprocess"]


@pytest.fixture
async def gw(tmp_path: Path, gateway_factory: Callable[..., Any]) -> Gateway:
    gateway: Gateway = await gateway_factory(fake_settings(tmp_path, models=MODELS, pipeline=PIPELINE))
    return gateway


async def chat(gw: Gateway, session: str, text: str, **body: Any) -> dict[str, Any]:
    headers = {"x-llmdock-session": session} if session else {}
    r = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": [{"role": "user", "content": text}], **body},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def memory_of(gw: Gateway) -> MemoryStage:
    """The gateway's memory stage, once every answer it took is stored (they are written off the loop)."""
    stage = next(s for s in gw.runtime.pipeline.stages if isinstance(s, MemoryStage))
    for saving in list(stage._saving.values()):
        await saving
    return stage


async def sent(
    stage: MemoryStage, runtime: Runtime, session: str, model: str = "fake", team: str = ""
) -> tuple[list[str], GenerationRequest]:
    """The contents of the messages the stage makes of a system message and a question, and the request."""
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "And now?"}]
    req = GenerationRequest("chat", SamplingParams(max_tokens=10), messages=messages)
    ctx = RequestContext("chat", model, runtime.backend(model), request=req)
    ctx.session, ctx.team_id = session, team
    await stage(ctx)
    return [m["content"] for m in req.messages or []], req


async def test_a_session_remembers_its_turns_and_another_session_does_not(gw: Gateway) -> None:
    await chat(gw, "s1", "The door code is blue.", user="ada")
    await chat(gw, "s2", "I like tea.", user="bob")
    await chat(gw, "", "No session here.")
    stage = await memory_of(gw)
    store = gw.runtime.store
    assert store is not None
    assert [(t.role, t.content) for t in load_turns(store, "", "s1", 20)] == [
        ("user", "The door code is blue."),
        ("assistant", "fake answer to: The door code is blue."),
    ]
    runtime: Runtime = gw.runtime
    assert (await sent(stage, runtime, "s1"))[0] == [
        "You are terse.",
        "The door code is blue.",
        "fake answer to: The door code is blue.",
        "And now?",
    ]  # the history goes after the system message, before the request's own turns
    other = (await sent(stage, runtime, "s2"))[0]
    assert other == ["You are terse.", "I like tea.", "fake answer to: I like tea.", "And now?"]
    assert (await sent(stage, runtime, "s1", team="t-other"))[0] == ["You are terse.", "And now?"]  # per team


async def test_the_oldest_turns_are_dropped_to_fit_the_window_with_room_for_the_answer(gw: Gateway) -> None:
    for n in range(1, 7):
        await chat(gw, "long", f"turn {n} word")  # 3 words asked, 6 answered: 25 tokens with the overhead
    runtime: Runtime = gw.runtime
    stage = await memory_of(gw)
    contents, req = await sent(stage, runtime, "long", model="small")
    # window 80, share 0.5: 40 tokens of history, each turn counted with 8 for its template: one exchange
    assert [h.split()[:2] for h in contents[1:-1]] == [["turn", "6"], ["fake", "answer"]]
    assert req.n_prompt_tokens + 10 <= 80
    runtime.settings.rag.memory_share = 1.0  # the whole window: then max_tokens is what limits it
    contents, req = await sent(stage, runtime, "long", model="small")
    assert [h.split()[:2] for h in contents[1:-1:2]] == [["turn", "5"], ["turn", "6"]]  # 3 leave no room
    assert req.n_prompt_tokens + 10 <= 80
    contents, _ = await sent(stage, runtime, "long")  # no window: every loaded exchange
    assert len(contents) == 2 + 12


async def test_gdpr_erase_deletes_the_subjects_turns_only(gw: Gateway) -> None:
    await chat(gw, "s1", "The sky is green.", user="ana")
    await chat(gw, "s2", "The grass is red.", user="rui")
    await memory_of(gw)
    store, secret = gw.runtime.store, gw.runtime.auth.secret
    assert store is not None
    actor = Actor("test", "pytest")
    exported = export_subject(store, "ana", actor, secret)["memory"]
    assert [m["content"] for m in exported] == ["The sky is green.", "fake answer to: The sky is green."]
    assert erase_subject(store, "ana", actor, secret)["memory_turns_deleted"] == 2
    assert load_turns(store, "", "s1", 20) == []
    assert len(load_turns(store, "", "s2", 20)) == 2


async def test_erasing_a_session_deletes_its_turns_and_traces_and_keeps_the_subjects_others(
    gw: Gateway,
) -> None:
    await chat(gw, "s1", "The sky is green.", user="ana")
    await chat(gw, "s1", "And the sea?", user="ana")
    await chat(gw, "s2", "The grass is red.", user="ana")
    await memory_of(gw)
    gw.flush_traces()
    store, secret = gw.runtime.store, gw.runtime.auth.secret
    assert store is not None
    with store.engine.connect() as conn:
        before = {t for (t,) in conn.exec_driver_sql("SELECT id FROM traces")}
    report = erase_session(store, "s1", Actor("test", "pytest"), secret)
    assert (report["memory_turns_deleted"], report["traces_deleted"]) == (4, 2)
    assert load_turns(store, "", "s1", 20) == []
    assert [t.content for t in load_turns(store, "", "s2", 20)] == [
        "The grass is red.",
        "fake answer to: The grass is red.",
    ]
    with store.engine.connect() as conn:
        after = {t for (t,) in conn.exec_driver_sql("SELECT id FROM traces")}
        s2 = {t for (t,) in conn.exec_driver_sql("SELECT trace_id FROM kb_memory WHERE session = 's2'")}
    assert len(before) == 3
    assert after == s2 < before  # the other conversation's request, the same subject's


async def test_a_session_id_too_long_is_refused_with_the_header_named(gw: Gateway) -> None:
    r = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-llmdock-session": "x" * 201},
    )
    assert r.status_code == 400
    assert "x-llmdock-session: longer than 200 characters" in r.json()["error"]["message"]


async def test_with_encrypt_bodies_the_turns_are_sealed_at_rest_and_still_remembered(
    tmp_path: Path, gateway_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain: Gateway = await gateway_factory(fake_settings(tmp_path, models=MODELS, pipeline=PIPELINE))
    await chat(plain, "s1", "My cat is called Miso.", user="ana")  # stored before encryption was turned on
    await memory_of(plain)
    await plain.runtime.close()
    monkeypatch.setenv("LLMDOCK_ENCRYPTION_KEY", new_key())
    settings = fake_settings(tmp_path, models=MODELS, pipeline=PIPELINE, privacy={"encrypt_bodies": True})
    gw: Gateway = await gateway_factory(settings)
    store = gw.runtime.store
    assert store is not None
    await chat(gw, "s1", "The vault codeword is zanzibar-1187.", user="ana")
    stage = await memory_of(gw)
    save_summary(store, "", "s2", "ana", "The user's codeword is quokka-42.", 0, stage.privacy.keyring)  # type: ignore[union-attr]
    gw.flush_traces()
    with store.engine.connect() as conn:
        stored = [c for (c,) in conn.exec_driver_sql("SELECT content FROM kb_memory ORDER BY id")]
    assert stored[:2] == ["My cat is called Miso.", "fake answer to: My cat is called Miso."]
    assert len(stored) == 5
    assert all(is_sealed(c) for c in stored[2:])
    disk = b"".join(p.read_bytes() for p in tmp_path.glob("llmdock.db*"))
    assert b"zanzibar-1187" not in disk
    assert b"quokka-42" not in disk
    assert b"Miso" in disk  # the check can fail: text stored in the clear is found
    contents = (await sent(stage, gw.runtime, "s1"))[0]  # the next turn still recalls it, old rows too
    assert contents[1:-1] == [
        "My cat is called Miso.",
        "fake answer to: My cat is called Miso.",
        "The vault codeword is zanzibar-1187.",
        "fake answer to: The vault codeword is zanzibar-1187.",
    ]
    assert load_summary(store, "", "s2") == ("The user's codeword is quokka-42.", 0)
    actor, secret = Actor("test", "pytest"), gw.runtime.auth.secret
    exported = [m["content"] for m in export_subject(store, "ana", actor, secret)["memory"]]
    assert len(exported) == 5
    assert "The vault codeword is zanzibar-1187." in exported
    assert erase_subject(store, "ana", actor, secret)["memory_turns_deleted"] == 5
    assert load_turns(store, "", "s1", 20) == []
    assert load_summary(store, "", "s2") is None
