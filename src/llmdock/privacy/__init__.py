"""Data protection: PII detection and redaction (Presidio), encryption at rest, the privacy policy, GDPR.

``crypto``: the AES-GCM keyring (the store's ``Keyring`` interface); ``privacy_policy``: what is redacted or
encrypted before anything is persisted, and where keys are read from; ``gdpr``: data-subject export and
erasure; ``rotation``: re-encryption under a new key; ``provider_secrets``: ``secret:NAME``
references in the config. ``pii_engine`` and ``privacy_policy`` load Presidio and spaCy when used; import
them where needed, not at startup.
"""

from llmdock.privacy.crypto import Keyring, new_key
from llmdock.store.keyring import DecryptionError

__all__ = ["DecryptionError", "Keyring", "new_key"]
