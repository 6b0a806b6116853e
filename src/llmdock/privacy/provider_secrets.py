"""Turning a ``secret:NAME`` reference in the config into the credential it names."""

from __future__ import annotations

from llmdock.config import Settings
from llmdock.errors import ConfigError, LlmdockError

SECRET_PREFIX = "secret:"


def resolve_secret(settings: Settings, name: str, *, where: str) -> str:
    """The secret's value, decrypted; a ConfigError naming ``where`` (the config field) if it cannot be had."""
    from llmdock.privacy.privacy_policy import load_keyring
    from llmdock.store.engine import Store
    from llmdock.store.secret_rows import get_secret

    try:
        keyring = load_keyring(settings, required=True)
        assert keyring is not None
        store = Store(settings.resolved_database_url())
        try:
            return get_secret(store, keyring, name)
        finally:
            store.close()
    except LlmdockError as exc:
        raise ConfigError(f"secret {name!r}: {exc.one_line()}", where=where) from None
