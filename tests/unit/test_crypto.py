"""Encryption at rest: AES-GCM values that name their key, so old and new keys coexist during rotation."""

from __future__ import annotations

import base64

import pytest

from llmdock.errors import ConfigError
from llmdock.privacy.crypto import Keyring, key_id, new_key, parse_keys
from llmdock.store.keyring import PREFIX, DecryptionError, open_trace_bodies, sealed_key_id


def keys(n: int) -> list[bytes]:
    return [base64.urlsafe_b64decode(new_key()) for _ in range(n)]


def test_a_sealed_value_opens_again_and_names_its_key() -> None:
    (key,) = keys(1)
    ring = Keyring([key])
    token = ring.seal_text("sk-live-123", "secret:openai")
    assert token.startswith(PREFIX)
    assert "sk-live-123" not in token
    assert sealed_key_id(token) == key_id(key) == ring.current_id
    assert ring.open_text(token, "secret:openai") == "sk-live-123"


def test_sealing_twice_gives_different_ciphertexts() -> None:
    ring = Keyring(keys(1))
    assert ring.seal_text("same") != ring.seal_text("same")


def test_a_value_does_not_open_under_another_context() -> None:
    ring = Keyring(keys(1))
    token = ring.seal_text("sk-live-123", "secret:openai")
    with pytest.raises(DecryptionError, match="does not authenticate"):
        ring.open_text(token, "secret:other")


def test_the_wrong_key_is_a_clear_error_naming_the_missing_key_id() -> None:
    old, new = keys(2)
    token = Keyring([old]).seal_text("v")
    with pytest.raises(DecryptionError, match=f"key id {key_id(old)}, which is not in the keyring"):
        Keyring([new]).open_text(token)


def test_an_altered_value_is_refused() -> None:
    ring = Keyring(keys(1))
    token = ring.seal_text("value")
    body = bytearray(base64.urlsafe_b64decode(token.rsplit(":", 1)[1]))
    body[-1] ^= 1
    with pytest.raises(DecryptionError):
        ring.open_text(token.rsplit(":", 1)[0] + ":" + base64.urlsafe_b64encode(bytes(body)).decode())


def test_old_keys_open_and_reseal_moves_a_value_to_the_current_key() -> None:
    old, new = keys(2)
    token = Keyring([old]).seal_text("v", "ctx")
    ring = Keyring([new, old])
    assert ring.open_text(token, "ctx") == "v"
    assert ring.needs_rotation(token)
    moved = ring.reseal(token, "ctx")
    assert sealed_key_id(moved) == key_id(new)
    assert not ring.needs_rotation(moved)
    assert Keyring([new]).open_text(moved, "ctx") == "v"
    assert ring.reseal(moved, "ctx") == moved


def test_keys_are_read_current_first_and_bad_ones_are_named_by_position_not_value() -> None:
    a, b = new_key(), new_key()
    assert parse_keys(f"{a}, {b}\n", "env X") == [base64.urlsafe_b64decode(k) for k in (a, b)]
    with pytest.raises(ConfigError, match=r"key #2 is not 32 bytes") as info:
        parse_keys(f"{a},not-a-key-at-all", "env LLMDOCK_ENCRYPTION_KEY")
    assert info.value.where == "env LLMDOCK_ENCRYPTION_KEY"
    assert "not-a-key-at-all" not in info.value.one_line()
    with pytest.raises(ConfigError, match="no encryption key"):
        parse_keys("  ", "file k")


def test_trace_bodies_open_only_with_a_key() -> None:
    ring = Keyring(keys(1))
    sealed_in = {"$sealed": ring.seal(b'{"messages": []}', "trace:t1:input")}
    sealed_out = ring.seal_text("answer", "trace:t1:output")
    assert open_trace_bodies(ring, "t1", sealed_in, sealed_out) == ({"messages": []}, "answer")
    assert open_trace_bodies(None, "t1", {"prompt": "p"}, "plain") == ({"prompt": "p"}, "plain")
    with pytest.raises(DecryptionError, match="no key is configured"):
        open_trace_bodies(None, "t1", sealed_in, sealed_out)
