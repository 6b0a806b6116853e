"""PII detection and redaction: Presidio's recognizers, checksums, masks and keyed pseudonyms."""

from __future__ import annotations

import socket

import pytest

from llmdock.privacy.pii_engine import PiiEngine, PiiFinding, UnknownEntity, pseudonym, shared_engine

KEY = b"k" * 32
CARD = "4539 1488 0343 6467"  # passes Luhn
BAD_CARD = "4539 1488 0343 6468"  # last digit changed: fails Luhn
IBAN = "DE89 3704 0044 0532 0130 00"  # valid mod-97
BAD_IBAN = "DE88 3704 0044 0532 0130 00"  # check digits changed


@pytest.fixture(scope="module")
def engine() -> PiiEngine:
    return shared_engine(
        ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "PHONE_NUMBER", "US_SSN", "IP_ADDRESS")
    )


def entities(engine: PiiEngine, text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in engine.find(text)]


def test_a_card_number_is_found_only_when_it_passes_luhn(engine: PiiEngine) -> None:
    assert entities(engine, f"my card is {CARD}, thanks") == [("CREDIT_CARD", CARD)]
    assert entities(engine, f"my card is {BAD_CARD}, thanks") == []


def test_mastercard_2_series_and_19_digit_numbers_are_cards_too_when_luhn_holds(engine: PiiEngine) -> None:
    assert entities(engine, "card 2223 0031 2200 3222 ok") == [("CREDIT_CARD", "2223 0031 2200 3222")]
    assert entities(engine, "card 2223 0031 2200 3223 ok") == []
    assert entities(engine, "card 4861221387837576284 ok") == [("CREDIT_CARD", "4861221387837576284")]


def test_an_iban_is_found_only_when_its_checksum_holds(engine: PiiEngine) -> None:
    assert entities(engine, f"refund to {IBAN} please") == [("IBAN_CODE", IBAN)]
    assert entities(engine, f"refund to {BAD_IBAN} please") == []


def test_email_phone_ssn_and_ip_are_found_with_their_spans(engine: PiiEngine) -> None:
    text = "Mail ana@example.org, call 415-555-0173, SSN 536-22-8726, host 203.0.113.9."
    found = engine.find(text)
    assert all(isinstance(f, PiiFinding) and 0 < f.score <= 1 for f in found)
    assert entities(engine, text) == [
        ("EMAIL_ADDRESS", "ana@example.org"),
        ("PHONE_NUMBER", "415-555-0173"),
        ("US_SSN", "536-22-8726"),
        ("IP_ADDRESS", "203.0.113.9"),
    ]


def test_text_without_pii_is_left_alone(engine: PiiEngine) -> None:
    text = "Summarise the quarterly report in three bullet points for the team meeting."
    assert engine.find(text) == []
    assert engine.redact(text) == text


def test_loopback_addresses_are_not_personal(engine: PiiEngine) -> None:
    assert engine.find("Uvicorn running on http://127.0.0.1:8000 and 0.0.0.0:9000") == []


def test_mask_replaces_each_value_by_its_entity_name(engine: PiiEngine) -> None:
    assert engine.redact(f"card {CARD} mail ana@example.org") == "card <CREDIT_CARD> mail <EMAIL_ADDRESS>"


def test_the_same_value_always_gets_the_same_pseudonym(engine: PiiEngine) -> None:
    one = engine.redact("write to ana@example.org", "pseudonymize", KEY)
    two = engine.redact("ANA@example.org is my address", "pseudonymize", KEY)
    token = pseudonym("EMAIL_ADDRESS", "ana@example.org", KEY)
    assert token.startswith("<EMAIL_ADDRESS_")
    assert len(token) == len("<EMAIL_ADDRESS_>") + 8
    assert one == f"write to {token}"
    assert two == f"{token} is my address"  # case does not make another person
    spaced = engine.redact(f"card {CARD}", "pseudonymize", KEY)
    packed = engine.redact(f"card {CARD.replace(' ', '')}", "pseudonymize", KEY)
    assert spaced == packed


def test_pseudonyms_differ_between_values_and_between_keys(engine: PiiEngine) -> None:
    a = pseudonym("EMAIL_ADDRESS", "ana@example.org", KEY)
    assert a != pseudonym("EMAIL_ADDRESS", "bob@example.org", KEY)
    assert a != pseudonym("EMAIL_ADDRESS", "ana@example.org", b"another key of 32 bytes........")


def test_pseudonymize_without_a_key_is_refused(engine: PiiEngine) -> None:
    with pytest.raises(ValueError, match="needs a key"):
        engine.redact("ana@example.org", "pseudonymize", None)


def test_redact_many_matches_redacting_one_by_one(engine: PiiEngine) -> None:
    texts = ["mail ana@example.org", "", "nothing here", f"card {CARD}", "call 415-555-0173"]
    assert engine.redact_many(texts, "pseudonymize", KEY) == [
        engine.redact(t, "pseudonymize", KEY) for t in texts
    ]


def test_reidentify_puts_back_only_values_the_source_holds(engine: PiiEngine) -> None:
    answer = engine.redact("Sure ana@example.org, and bob@example.org too", "pseudonymize", KEY)
    restored = engine.reidentify(answer, "I am ana@example.org", KEY)
    assert "ana@example.org" in restored
    assert "bob@example.org" not in restored
    assert pseudonym("EMAIL_ADDRESS", "bob@example.org", KEY) in restored


def test_email_validation_never_touches_the_network(
    engine: PiiEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise AssertionError("network access during PII detection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert entities(engine, "write to someone@mail.example.co.uk") == [
        ("EMAIL_ADDRESS", "someone@mail.example.co.uk")
    ]


def test_person_names_are_found_by_name_lists_without_ner() -> None:
    lists = shared_engine(("PERSON", "EMAIL_ADDRESS"))
    assert not lists.uses_ner
    text = "Hello, my name is Maria Gonzalez and my mail is maria@example.org."
    assert ("PERSON", "Maria Gonzalez") in entities(lists, text)
    assert lists.redact(text) == "Hello, my name is <PERSON> and my mail is <EMAIL_ADDRESS>."


def test_ner_finds_the_names_the_lists_do_not_know() -> None:
    text = "Yesterday Oluwaseun Adebayo called."
    assert entities(shared_engine(("PERSON",)), text) == []
    ner = shared_engine(("PERSON",), ner=True)
    assert ner.uses_ner
    assert entities(ner, text) == [("PERSON", "Oluwaseun Adebayo")]


def test_an_unknown_entity_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownEntity, match="'EMAIL'.*EMAIL_ADDRESS"):
        PiiEngine(["EMAIL"])


def all_recognizers(engine: PiiEngine, text: str) -> list[tuple[str, int, int, float]]:
    """What Presidio finds when every configured recognizer runs (no pre-filter)."""
    from llmdock.privacy.pii_engine import ALLOW_LIST

    results = engine._analyzer.analyze(
        text=text,
        language="en",
        entities=list(engine.entities),
        score_threshold=engine.score_threshold,
        allow_list=list(ALLOW_LIST),
    )
    found = sorted(results, key=lambda r: (r.start, -r.end, r.entity_type))
    return [(r.entity_type, r.start, r.end, float(r.score)) for r in found]


def test_skipping_recognizers_that_cannot_match_finds_the_same_as_running_them_all() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from pii_redaction import labelled_set

    cases, clean = labelled_set()
    texts = [text for items in cases.values() for text, _ in items] + list(clean)
    texts += [
        "ips fe80::1, 2001:db8::ff00:42:8329 and ::ffff:10.0.0.1",
        f"iban {IBAN} lower {IBAN.lower()}",
        "call +49 30 1234 or +290 5000 or 020 7946 0958",
        "wallet bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq and 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
        "ssn 078-05-1120, card 4111-1111-1111-1111, mail x@y.org",
        "full-width digits \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11",
    ]
    engine = shared_engine(
        ("CREDIT_CARD", "CRYPTO", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER", "US_SSN")
    )
    for text in texts:
        found = [(f.entity, f.start, f.end, f.score) for f in engine.find(text)]
        assert sorted(found) == sorted(all_recognizers(engine, text)), text


def test_a_text_no_recognizer_can_match_is_not_analysed(engine: PiiEngine) -> None:
    assert engine.possible_entities("no digits, no at sign: nothing to look for") == []
    assert "EMAIL_ADDRESS" in engine.possible_entities("write to a@b.c")
    assert "CREDIT_CARD" not in engine.possible_entities("in 2024 and 2025")
