"""The trace's PII mask reuses the `pii` guard's findings, and masks exactly what it masked without them.

The mask analyses all of a trace's strings joined by a blank line; the guard analysed the user's message
alone. Reuse must give, string by string, what the joined analysis gives: each test below builds texts on
which a careless reuse would differ (a context word in the string before, a date across the blank line, a
guard looking for fewer entities) and checks the answer is the joined one.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmdock.config import DEFAULT_PII_ENTITIES, Settings
from llmdock.privacy.findings import PiiAnalysis, PiiFinding, reuse, split
from llmdock.privacy.pii_engine import PiiEngine, shared_engine
from llmdock.privacy.presidio_setup import PART_SEPARATOR
from llmdock.privacy.privacy_policy import PrivacyPolicy
from llmdock.privacy.separable import newline_free
from llmdock.store.trace_records import TraceRecord

ROOT = Path(__file__).resolve().parents[2]
PARCEL = (
    "Hello, I ordered two novels last Tuesday and the parcel has not arrived yet. The tracking page says it "
    "left the warehouse on Wednesday. Could you tell me what usually happens in such cases and whether I "
    "should wait a few more days before asking for a replacement? Thanks a lot for your help."
)
# What else a trace holds: the role, the answer, the error, attribute values (as a guarded request has them).
AROUND = ["chat", "fake", "openai_compat", "gateway", "classifier", "none", "skip", "length"]


@pytest.fixture(scope="module")
def engine() -> PiiEngine:
    return shared_engine(tuple(DEFAULT_PII_ENTITIES))


def joined(engine: PiiEngine, texts: Sequence[str]) -> list[list[PiiFinding]]:
    """What the mask found before reuse: one analysis of the texts joined, given back to each."""
    return [list(found) for found in split(texts, engine.find(PART_SEPARATOR.join(texts)))]


def with_reuse(engine: PiiEngine, texts: Sequence[str], reused: Sequence[str]) -> list[list[PiiFinding]]:
    known = {t: engine.analyse(t) for t in reused}
    return [list(found) for found in engine.find_many(texts, known)]


def naive(engine: PiiEngine, texts: Sequence[str]) -> list[list[PiiFinding]]:
    """Each text analysed alone: what a reuse that ignored the conditions would give."""
    return [engine.find(t) for t in texts]


def corpus() -> list[str]:
    """Labelled PII texts (bench/data/pii_test.jsonl.gz: names, addresses, phones, cards … in free text)."""
    with gzip.open(ROOT / "bench" / "data" / "pii_test.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line)["text"] for line in f]
    return rows[::8] + [PARCEL, "Please summarise the attached minutes for Anna and Tom, briefly."]


def test_reuse_gives_what_the_joined_analysis_gives_on_realistic_traces(engine: PiiEngine) -> None:
    texts = corpus()
    reused = 0
    for i, prompt in enumerate(texts):
        answer = texts[(i + 1) % len(texts)]  # an answer with PII of its own
        trace = ["user", prompt, answer, "", *AROUND]
        assert with_reuse(engine, trace, [prompt]) == joined(engine, trace), prompt
        reused += reuse(engine, trace, {prompt: engine.analyse(prompt)}) is not None
    # not vacuous: the texts without digits (names, e-mails) are served from the guard's findings
    assert reused >= len(texts) // 10, (reused, len(texts))


def test_the_guarded_parcel_enquiry_is_not_analysed_again(engine: PiiEngine, monkeypatch: Any) -> None:
    trace = ["user", PARCEL, "hello from upstream", "", *AROUND]
    known = {PARCEL: engine.analyse(PARCEL)}
    expected = joined(engine, trace)
    calls: list[str] = []
    analyse = engine.analyse

    def counted(text: str) -> PiiAnalysis:
        calls.append(text)
        return analyse(text)

    monkeypatch.setattr(engine, "analyse", counted)
    assert [list(f) for f in engine.find_many(trace, known)] == expected
    assert calls == []  # the other strings cannot hold a name, an e-mail …: nothing to analyse


def test_a_context_word_in_the_string_before_stops_reuse() -> None:
    # Only separable entities here, so the context rule alone decides: "passport" in the string before
    # lifts a weak ID number in the joined text, and the ID number analysed alone has no such word.
    engine = shared_engine(("ID_NUMBER", "PERSON", "EMAIL_ADDRESS"))
    assert engine.separable == {"ID_NUMBER", "PERSON", "EMAIL_ADDRESS"}
    before, code = "Renew my passport", "X1234567 expires in May"
    trace = [before, code, "chat"]
    assert joined(engine, trace)[1] != naive(engine, trace)[1]  # the case bites
    assert not engine.analyse(code).local
    assert with_reuse(engine, trace, [code]) == joined(engine, trace)
    # the other way round: the reused string holds the word, the string analysed now the code
    assert with_reuse(engine, trace, [before]) == joined(engine, trace)


def test_a_date_across_the_blank_line_stops_reuse(engine: PiiEngine) -> None:
    trace = ["I was born on 12", "March 1990, in Leeds", "chat"]
    assert "DATE_OF_BIRTH" not in engine.separable  # its patterns read across lines (\s)
    assert joined(engine, trace) != naive(engine, trace)
    assert with_reuse(engine, trace, [trace[1]]) == joined(engine, trace)


def test_a_guard_looking_for_fewer_entities_is_not_reused() -> None:
    policy = default_policy()
    assert policy.engine is not None
    guard = shared_engine(("EMAIL_ADDRESS",))
    prompt = "Maria Gonzalez wrote from maria.gonzalez@example.org yesterday."
    assert [f.entity for f in guard.find(prompt)] == ["EMAIL_ADDRESS"]  # it misses the name

    def prepared(memo: dict[tuple[object, str], object] | None) -> bytes:
        rec = TraceRecord(
            "t1", _now(), "chat", "fake", "ok", 1.0,
            input={"messages": [{"role": "user", "content": prompt}]}, output="Noted, Ms Gonzalez.",
            attributes={"llmdock.source": "gateway"}, pii_analyses=memo,
        )  # fmt: skip
        policy.prepare_trace(rec)
        assert rec.pii_analyses is None  # never stored, never journaled
        return orjson.dumps(rec)

    without = prepared(None)
    assert b"Gonzalez" not in without
    assert b"<PERSON>" in without
    assert prepared({(guard, prompt): guard.analyse(prompt)}) == without
    same = policy.engine
    assert prepared({(same, prompt): same.analyse(prompt)}) == without


@pytest.mark.parametrize(
    ("pattern", "flags", "free"),
    [
        (r"\d{3}-\d{4}", 0, True),
        (r"\d+\s+\d+", 0, False),
        (r"a.b", re.DOTALL, False),
        (r"a.b", 0, True),
        (r"^x", 0, False),
        (r"^x$", re.MULTILINE, True),
        (r"\Ax", re.MULTILINE, False),
        (r"(?<=\s)x", 0, False),
        (r"(?<![\w.])x\b", 0, True),
        (r"[^a-z]", 0, False),
        (r"[A-Z \t-]+", 0, True),
        (r"\p{Lu}", 0, False),
        (r"x(?:[ ]?(?:ext|#)[ ]?\d{1,5})?(?!\w|[.,-]\d)", 0, True),
    ],
)
def test_a_pattern_is_separable_only_if_no_match_can_hold_a_line_break(
    pattern: str, flags: int, free: bool
) -> None:
    assert newline_free(pattern, flags) is free


def default_policy() -> PrivacyPolicy:
    return PrivacyPolicy(Settings(home=Path("/nonexistent"), include_builtin_models=False))


def _now() -> datetime:
    return datetime(2026, 12, 7, tzinfo=UTC)
