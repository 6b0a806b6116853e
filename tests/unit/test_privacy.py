"""The privacy policy in a running gateway: what reaches the store and the logs is redacted or encrypted,
while the client's answer is unchanged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from llmdock.config import Settings
from llmdock.errors import ConfigError
from llmdock.privacy.crypto import new_key
from llmdock.privacy.privacy_policy import PrivacyPolicy
from llmdock.runtime import Runtime
from llmdock.store import TraceRecord, TraceWriter, get_trace
from llmdock.store.keyring import is_sealed
from tests.conftest import Gateway

EMAIL, CARD = "ana.lopez@example.org", "4539 1488 0343 6467"
PROMPT = f"I am {EMAIL}, my card {CARD} was charged twice"
MakeGateway = Callable[[Settings], Any]


async def ask(gw: Gateway, content: str = PROMPT) -> Any:
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "fake", "messages": [{"role": "user", "content": content}], "temperature": 0},
    )
    assert resp.status_code == 200, resp.text
    gw.flush_traces()
    return resp


def raw_store_bytes(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in home.glob("llmdock.db*"))


async def test_masked_traces_hold_no_pii_but_the_answer_is_untouched(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    gw: Gateway = await gateway_factory(make_settings(privacy={"pii": "mask"}))
    resp = await ask(gw)
    assert EMAIL in resp.json()["choices"][0]["message"]["content"]  # the fake echoes the prompt
    assert gw.runtime.store is not None
    trace, _ = get_trace(gw.runtime.store, resp.headers["x-llmdock-trace-id"])
    assert (
        trace.input["messages"][0]["content"]
        == "I am <EMAIL_ADDRESS>, my card <CREDIT_CARD> was charged twice"
    )
    assert "<EMAIL_ADDRESS>" in trace.output
    assert EMAIL not in trace.output
    raw = raw_store_bytes(tmp_path)
    assert EMAIL.encode() not in raw
    assert CARD.encode() not in raw


async def test_pseudonymized_traces_keep_one_token_per_value(
    gateway_factory: MakeGateway,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMDOCK_PSEUDONYM_KEY", "a pseudonym key of enough bytes")
    gw: Gateway = await gateway_factory(make_settings(privacy={"pii": "pseudonymize"}))
    first = await ask(gw)
    second = await ask(gw, f"again {EMAIL}")
    assert gw.runtime.store is not None
    one, _ = get_trace(gw.runtime.store, first.headers["x-llmdock-trace-id"])
    two, _ = get_trace(gw.runtime.store, second.headers["x-llmdock-trace-id"])
    token = one.input["messages"][0]["content"].split()[2].rstrip(",")
    assert token.startswith("<EMAIL_ADDRESS_")
    assert two.input["messages"][0]["content"] == f"again {token}"


async def test_encrypted_bodies_are_ciphertext_in_the_database_and_clear_through_the_store(
    gateway_factory: MakeGateway,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("LLMDOCK_ENCRYPTION_KEY", new_key())
    gw: Gateway = await gateway_factory(make_settings(privacy={"encrypt_bodies": True}))
    resp = await ask(gw, "a private question about tulips")
    store = gw.runtime.store
    assert store is not None
    trace_id = resp.headers["x-llmdock-trace-id"]
    with store.engine.connect() as conn:
        stored_in, stored_out = conn.execute(
            text("SELECT input, output FROM traces WHERE id = :id"), {"id": trace_id}
        ).one()
    assert "tulips" not in stored_in
    assert is_sealed(stored_out)
    trace, _ = get_trace(store, trace_id)
    assert trace.input["messages"][0]["content"] == "a private question about tulips"
    assert trace.output == "fake answer to: a private question about tulips"
    assert b"tulips" not in raw_store_bytes(tmp_path)


async def test_log_output_is_redacted_while_the_runtime_is_open(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    before = logging.getLogRecordFactory()  # another test's open runtime may have installed its own
    gw: Gateway = await gateway_factory(make_settings(privacy={"pii": "mask"}))
    log = logging.getLogger("llmdock.test")
    with caplog.at_level(logging.INFO, logger="llmdock.test"):
        log.warning("request from %s", EMAIL)
        try:
            raise ValueError(f"bad card {CARD}")
        except ValueError:
            log.exception("failed")
    assert "request from <EMAIL_ADDRESS>" in caplog.text
    assert "bad card <CREDIT_CARD>" in caplog.text
    assert EMAIL not in caplog.text
    assert CARD not in caplog.text
    await gw.runtime.close()
    assert logging.getLogRecordFactory() is before  # uninstalled with the runtime


def test_privacy_config_errors_name_the_setting(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMDOCK_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("LLMDOCK_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ConfigError, match="no key is set") as info:
        PrivacyPolicy(make_settings(privacy={"pii": "pseudonymize"}))
    assert info.value.where == "privacy.pii"
    with pytest.raises(ConfigError, match="unknown PII entity 'EMAIL'") as info:
        PrivacyPolicy(make_settings(privacy={"pii": "mask", "entities": ["CREDIT_CARD", "EMAIL"]}))
    assert info.value.where == "privacy.entities.1"
    with pytest.raises(ConfigError, match="no encryption key"):
        PrivacyPolicy(make_settings(privacy={"encrypt_bodies": True}))
    monkeypatch.setenv("LLMDOCK_PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigError, match="shorter than 16 bytes") as info:
        PrivacyPolicy(make_settings(privacy={"pii": "pseudonymize"}))
    assert info.value.where == "env LLMDOCK_PSEUDONYM_KEY"


async def test_a_trace_that_cannot_be_prepared_is_dropped_not_stored_in_the_clear(
    make_settings: Callable[..., Settings],
) -> None:
    from datetime import UTC, datetime

    runtime = Runtime(make_settings(), with_store=True)
    assert runtime.store is not None

    def prepare(rec: TraceRecord) -> None:
        if "boom" in rec.output:
            raise RuntimeError("cannot")
        rec.output = "redacted"

    writer = TraceWriter(runtime.store, prepare=prepare)
    now = datetime.now(UTC)
    for trace_id, output in (("a" * 32, "boom secret"), ("b" * 32, "fine")):
        writer.submit(TraceRecord(trace_id, now, "chat", "m", "ok", duration_ms=1, output=output))
    assert writer.flush(10)
    writer.close()
    assert writer.status()["dropped"] == 1
    assert get_trace(runtime.store, "b" * 32)[0].output == "redacted"
    with runtime.store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM traces WHERE output LIKE '%boom%'")).scalar() == 0
    await runtime.close()


async def test_presidio_logging_inside_a_redaction_does_not_deadlock_the_log_redactor(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings]
) -> None:
    gw: Gateway = await gateway_factory(make_settings(privacy={"pii": "mask"}))
    presidio = logging.getLogger("presidio-analyzer")
    level = presidio.level
    presidio.setLevel(logging.DEBUG)  # Presidio logs a dozen debug lines per analysis
    try:
        result: list[str] = []
        worker = threading.Thread(target=lambda: result.append(gw.runtime.privacy.redact(PROMPT)))
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "redaction deadlocked on its own log records"
        assert result == ["I am <EMAIL_ADDRESS>, my card <CREDIT_CARD> was charged twice"]
    finally:
        presidio.setLevel(level)


async def test_the_subject_is_stored_as_a_pseudonym_and_gdpr_requests_still_find_it(
    gateway_factory: MakeGateway, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from llmdock.privacy.gdpr import erase_subject, export_subject
    from llmdock.store.audit import Actor

    gw: Gateway = await gateway_factory(make_settings(privacy={"pii": "mask"}))
    body = {"model": "fake", "messages": [{"role": "user", "content": "hello"}], "user": EMAIL}
    resp = await gw.client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200
    gw.flush_traces()
    store, secret = gw.runtime.store, gw.runtime.auth.secret
    assert store is not None
    trace, _ = get_trace(store, resp.headers["x-llmdock-trace-id"])
    assert trace.subject.startswith("subject:")
    assert EMAIL.encode() not in raw_store_bytes(tmp_path)
    actor = Actor("test", "pytest")
    assert [t["id"] for t in export_subject(store, EMAIL, actor, secret)["traces"]] == [trace.id]
    assert erase_subject(store, EMAIL, actor, secret)["traces_deleted"] == 1
