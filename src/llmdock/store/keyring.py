"""What the store needs to know about encryption at rest: the sealed-value envelope and a keyring interface.

The store keeps sealed values (trace bodies, secrets) and opens them for its queries, but it does not do the
cryptography: :class:`Keyring` is the interface it calls, implemented by ``llmdock.privacy.crypto.Keyring``
(AES-256-GCM). What both sides share is the envelope, defined here: a sealed value is text
``llmdock:enc:v1:<key id>:<body>``, so the store can tell a sealed value from a plain one and name its key
without opening it; a trace's input (JSON), when sealed, is stored as ``{"$sealed": <token>}``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeGuard

import orjson

from llmdock.errors import LlmdockError

PREFIX = "llmdock:enc:v1:"
SEALED = "$sealed"  # a trace's input (JSON), when encrypted, is stored as {"$sealed": <token>}


class DecryptionError(LlmdockError):
    """A sealed value cannot be opened: its key is not in the keyring, or it was altered."""

    status = 500
    code = "decryption_failed"


def is_sealed(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_key_id(token: str) -> str:
    """The key id a sealed value names (without opening it)."""
    return token[len(PREFIX) :].split(":", 1)[0]


class Keyring(Protocol):
    """Seals and opens values; ``context`` is bound to the value (it opens only under the same context)."""

    def seal_text(self, text: str, context: str = "") -> str: ...

    def open(self, token: str, context: str = "") -> bytes: ...

    def open_text(self, token: str, context: str = "") -> str: ...


def open_trace_bodies(keyring: Keyring | None, trace_id: str, inputs: Any, output: str) -> tuple[Any, str]:
    """A stored trace's input and output in the clear (they are returned as they are if not encrypted)."""
    sealed_in = isinstance(inputs, dict) and is_sealed(inputs.get(SEALED))
    if (sealed_in or is_sealed(output)) and keyring is None:
        raise DecryptionError(
            "trace bodies are encrypted and no key is configured (privacy.encryption_key_env)",
            where=f"trace {trace_id}",
        )
    if sealed_in and keyring is not None:
        inputs = orjson.loads(keyring.open(inputs[SEALED], f"trace:{trace_id}:input"))
    if is_sealed(output) and keyring is not None:
        output = keyring.open_text(output, f"trace:{trace_id}:output")
    return inputs, output
