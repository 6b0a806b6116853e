"""The privacy policy of one runtime: what is redacted or encrypted before anything is persisted.

Built from ``settings.privacy`` (docs/configuration.md#privacy). Where it applies:

- traces: the trace writer's thread calls :meth:`PrivacyPolicy.prepare_trace` on each record before it is
  stored, so redaction and encryption cost the request nothing (the client's response is never changed);
- shared cache entries (Redis): :meth:`shareable` redacts an answer before it leaves the process, off the
  response path; a pseudonymised answer served back is re-identified from the asking request's own prompt;
- log output: :class:`RedactingLogRecords` rewrites each log record's message as it is created.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from llmdock.config import Settings
from llmdock.errors import ConfigError
from llmdock.privacy.crypto import Keyring, parse_keys
from llmdock.privacy.findings import PiiAnalysis
from llmdock.privacy.gdpr import subject_pseudonym
from llmdock.store.keyring import SEALED
from llmdock.store.trace_records import TraceRecord

if TYPE_CHECKING:
    from llmdock.privacy.pii_engine import Mode

MIN_PSEUDONYM_KEY_BYTES = 16


def _read_secret(env_name: str, path: Path | None) -> tuple[str, str] | None:
    """(material, where) from the environment variable, else the file; None if neither is set."""
    value = os.environ.get(env_name, "").strip()
    if value:
        return value, f"env {env_name}"
    if path is not None:
        path = path.expanduser()
        try:
            return path.read_text(encoding="utf-8").strip(), str(path)
        except OSError as exc:
            raise ConfigError(f"cannot read key file: {exc.strerror}", where=str(path)) from None
    return None


def load_keyring(settings: Settings, *, required: bool = False) -> Keyring | None:
    """The encryption keyring from ``privacy.encryption_key_env`` or ``privacy.encryption_key_file``."""
    p = settings.privacy
    found = _read_secret(p.encryption_key_env, p.encryption_key_file)
    if found is None:
        if required:
            raise ConfigError(
                f"no encryption key: set {p.encryption_key_env} or privacy.encryption_key_file "
                "(`llmdock secrets new-key` makes one)",
                where=settings.where(("privacy", "encryption_key_env")),
            )
        return None
    material, where = found
    return Keyring(parse_keys(material, where), source=where)


def load_pseudonym_key(settings: Settings) -> bytes:
    p = settings.privacy
    found = _read_secret(p.pseudonym_key_env, p.pseudonym_key_file)
    if found is None:
        raise ConfigError(
            f"privacy.pii is pseudonymize but no key is set: put at least {MIN_PSEUDONYM_KEY_BYTES} random "
            f"bytes in {p.pseudonym_key_env} or privacy.pseudonym_key_file",
            where=settings.where(("privacy", "pii")),
        )
    material, where = found
    if len(material.encode()) < MIN_PSEUDONYM_KEY_BYTES:
        raise ConfigError(f"pseudonym key shorter than {MIN_PSEUDONYM_KEY_BYTES} bytes", where=where)
    return material.encode()


class PrivacyPolicy:
    def __init__(self, settings: Settings) -> None:
        from llmdock.privacy.pii_engine import PiiEngine, UnknownEntity, shared_engine

        p = settings.privacy
        self.mode = p.pii
        self.encrypt_bodies = p.encrypt_bodies
        self.engine: PiiEngine | None = None
        self.pseudonym_key: bytes | None = None
        if self.mode != "off":
            if self.mode == "pseudonymize":
                self.pseudonym_key = load_pseudonym_key(settings)
            try:
                self.engine = shared_engine(
                    tuple(p.entities), "en", p.score_threshold, tuple(p.phone_regions), ner=p.ner
                )
            except UnknownEntity as exc:
                index = p.entities.index(exc.entity)
                raise ConfigError(str(exc), where=settings.where(("privacy", "entities", index))) from None
            except (ImportError, OSError) as exc:  # Presidio or the spaCy model package is not installed
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(
                    f"PII detection cannot load: {first}", where=settings.where(("privacy", "pii"))
                ) from None
        # Sealing trace bodies needs the key; without encrypt_bodies a configured key still opens old ones.
        self.keyring = load_keyring(settings, required=self.encrypt_bodies)
        self.subject_key: bytes = b""  # set by the runtime: the auth secret (privacy.gdpr.subject_pseudonym)

    @property
    def active(self) -> bool:
        """Whether trace records need preparing before they are stored."""
        return self.engine is not None or self.encrypt_bodies

    def redact(self, text: str) -> str:
        if self.engine is None or not text:
            return text
        return self.engine.redact(text, "mask" if self.mode == "mask" else "pseudonymize", self.pseudonym_key)

    def redact_json(self, value: Any, known: Mapping[str, PiiAnalysis] | None = None) -> Any:
        """Every string inside ``value`` (dicts, lists) redacted, with one analyzer call for all of them;
        ``known``: this engine's analyses of some of the strings alone (``PiiEngine.find_many``)."""
        if self.engine is None:
            return value
        texts = list(_strings(value))
        if not texts:
            return value
        mode: Mode = "mask" if self.mode == "mask" else "pseudonymize"
        redacted = self.engine.redact_many(texts, mode, self.pseudonym_key, known)
        if redacted == texts:
            return value  # nothing found: the structure as it is (no copy)
        replaced = iter(redacted)
        return _rebuild(value, lambda _s: next(replaced))

    def known_analyses(self, rec: TraceRecord) -> dict[str, PiiAnalysis] | None:
        """What this policy's engine already found in the trace's texts (the ``pii`` guard shares the engine
        when its settings match), taken off the record: it is never stored."""
        memo, rec.pii_analyses = rec.pii_analyses, None
        if not memo or self.engine is None:
            return None
        return {
            text: analysis
            for (engine, text), analysis in memo.items()
            if engine is self.engine and isinstance(analysis, PiiAnalysis)
        }

    def prepare_trace(self, rec: TraceRecord) -> None:
        """Redact, then (if configured) encrypt a trace in place. Runs in the trace writer's thread."""
        if self.engine is not None and rec.subject and self.subject_key:
            # Who the data is about may itself be personal (an e-mail in `user`): stored as a keyed
            # pseudonym, which GDPR export/erase compute from the subject they are given.
            rec.subject = subject_pseudonym(self.subject_key, rec.subject)
        known = self.known_analyses(rec)
        if self.engine is not None:
            parts = self.redact_json(
                [rec.input, rec.output, rec.error, rec.attributes, [s.attributes for s in rec.spans]], known
            )
            rec.input, rec.output, rec.error, rec.attributes, span_attrs = parts
            for span, attrs in zip(rec.spans, span_attrs, strict=True):
                span.attributes = attrs
        if self.encrypt_bodies and self.keyring is not None:
            if rec.input:
                rec.input = {SEALED: self.keyring.seal(orjson.dumps(rec.input), f"trace:{rec.id}:input")}
            if rec.output:
                rec.output = self.keyring.seal_text(rec.output, f"trace:{rec.id}:output")

    async def shareable(self, value: bytes) -> bytes | None:
        """A cache entry (``{"text": ...}`` JSON) as it may leave the process: its answer redacted.

        Pseudonymised answers are shared (a request holding the same values gets them back); a masked
        answer that held PII is not shared at all (None): served from the cache it would differ from the
        model's answer, and nothing could put the values back. Runs in a worker thread: the caller is a
        background task, and redaction should not hold the loop.
        """
        if self.engine is None:
            return value
        return await asyncio.to_thread(self._redact_entry, value)

    def _redact_entry(self, value: bytes) -> bytes | None:
        entry = orjson.loads(value)
        text = entry.get("text", "")
        redacted = self.redact(text)
        if redacted != text and self.pseudonym_key is None:
            return None
        entry["text"] = redacted
        return orjson.dumps(entry)

    def restore(self, text: str, source: str) -> str:
        """A cached answer's pseudonyms whose value the asking request holds, put back (see PiiEngine)."""
        if self.engine is None or self.pseudonym_key is None:
            return text
        return self.engine.reidentify(text, source, self.pseudonym_key)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _rebuild(value: Any, replace: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return replace(value)
    if isinstance(value, dict):
        return {k: _rebuild(v, replace) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rebuild(v, replace) for v in value]
    return value


class RedactingLogRecords:
    """A log record factory that redacts each record's message (and traceback) as it is made.

    A factory rather than a handler filter: it covers every handler, including the ones uvicorn configures
    after llmdock starts. Installed while a runtime with ``privacy.pii`` on is open.
    """

    def __init__(self, policy: PrivacyPolicy) -> None:
        self.policy = policy
        self.previous = logging.getLogRecordFactory()
        self._busy = threading.local()  # Presidio logs too: its records must not recurse into redaction

    def install(self) -> None:
        logging.setLogRecordFactory(self)

    def uninstall(self) -> None:
        if logging.getLogRecordFactory() is self:
            logging.setLogRecordFactory(self.previous)

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        engine = self.policy.engine
        if getattr(self._busy, "on", False) or (engine is not None and engine.running_here()):
            return record  # logged by Presidio itself, about its own work
        self._busy.on = True
        try:
            message = record.getMessage()
            redacted = self.policy.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, ()
            if record.exc_info and not record.exc_text:
                record.exc_text = self.policy.redact(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = self.policy.redact(record.stack_info)
        except Exception as exc:  # a log call must never fail, nor let unredacted text through
            record.msg, record.args = f"[message withheld: redaction failed: {type(exc).__name__}]", ()
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        finally:
            self._busy.on = False
        return record
