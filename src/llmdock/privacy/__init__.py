"""Data protection: PII detection and redaction (Presidio), encryption at rest, the privacy policy.

``pii`` and ``policy`` load Presidio and spaCy when used; import them where needed, not at startup.
"""

from llmdock.privacy.crypto import DecryptionError, Keyring, new_key

__all__ = ["DecryptionError", "Keyring", "new_key"]
