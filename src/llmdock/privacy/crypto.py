"""Encryption at rest: AES-256-GCM (``cryptography``) with the key id inside every ciphertext.

:class:`Keyring` implements the interface the store opens sealed values with (``llmdock.store.keyring``,
which also defines the envelope below).

A sealed value is text, ``llmdock:enc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>``, so it fits any
text or JSON column. The key id (the first 8 hex digits of the key's SHA-256) says which key opens it, so
during a key rotation values under the old and the new key coexist and all of them open: the keyring holds
the current key (which seals) and any older keys (which only open). An optional *context* is bound to the
ciphertext as associated data (e.g. ``secret:openai``), so a sealed value copied to another row does not
open there.

Why AES-GCM rather than Fernet/MultiFernet: Fernet tokens carry no key id, so a resumed rotation could not
tell, without trying every key, which values are already under the new key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from llmdock.errors import ConfigError
from llmdock.store.keyring import PREFIX, DecryptionError, is_sealed, sealed_key_id

NONCE_BYTES = 12
KEY_BYTES = 32


def new_key() -> str:
    """A fresh random key in the form the keyring reads (base64url of 32 bytes)."""
    return base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=256)).decode()


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def parse_keys(material: str, where: str) -> list[bytes]:
    """Keys from text: base64url keys separated by commas, spaces or newlines, the current one first.

    Errors name ``where`` and the key's position, never its value.
    """
    keys = []
    for n, item in enumerate(material.replace(",", " ").split(), start=1):
        try:
            raw = base64.urlsafe_b64decode(item + "=" * (-len(item) % 4))
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != KEY_BYTES:
            raise ConfigError(
                f"encryption key #{n} is not 32 bytes of base64url (make one with `llmdock secrets new-key`)",
                where=where,
            )
        keys.append(raw)
    if not keys:
        raise ConfigError("no encryption key given", where=where)
    return keys


class Keyring:
    """The current key (seals and opens) and older keys (open only), each known by its key id."""

    def __init__(self, keys: Sequence[bytes], source: str = "keyring") -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        self.source = source
        self._ciphers = {key_id(k): AESGCM(k) for k in keys}
        self.current_id = key_id(keys[0])
        self._current = self._ciphers[self.current_id]

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def seal(self, data: bytes, context: str = "") -> str:
        nonce = os.urandom(NONCE_BYTES)
        body = nonce + self._current.encrypt(nonce, data, context.encode())
        return f"{PREFIX}{self.current_id}:{base64.urlsafe_b64encode(body).decode()}"

    def open(self, token: str, context: str = "") -> bytes:
        if not is_sealed(token):
            raise DecryptionError("not an encrypted value", where=context or None)
        kid, _, body = token[len(PREFIX) :].partition(":")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(
                f"encrypted with key id {kid}, which is not in the keyring ({self.source}: key ids "
                f"{', '.join(self.key_ids)}); add that key after the current one",
                where=context or None,
            )
        try:
            raw = base64.urlsafe_b64decode(body)
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise DecryptionError(
                f"value under key id {kid} does not authenticate: altered, or stored for another row",
                where=context or None,
            ) from None

    def seal_text(self, text: str, context: str = "") -> str:
        return self.seal(text.encode(), context)

    def open_text(self, token: str, context: str = "") -> str:
        return self.open(token, context).decode()

    def needs_rotation(self, token: str) -> bool:
        return is_sealed(token) and sealed_key_id(token) != self.current_id

    def reseal(self, token: str, context: str = "") -> str:
        """The same plaintext sealed under the current key (unchanged if it already is)."""
        if not self.needs_rotation(token):
            return token
        return self.seal(self.open(token, context), context)
