"""Street addresses in free text, in the orders of several countries (a Presidio recognizer).

Every house number is a candidate ("1659", "99/81", "12b"); the words beside it on the same line decide:

- number, then capitalised words and a street word: "1659 Hoog St", "18/107, Kothari Street";
- number, then a street word and the name: "94 boulevard Amiral Courbet", "12 rue de la Paix";
- a street word, the name, then the number: "Via Pisanelli 104", "ul. Leśna 99/81", "Viale Ricolfi, 886";
- a compound street name, then the number: "Mattenstrasse 108", "Harevænget 23", "Storgatan 4";
- a name and a number followed by a postcode and a town: "Průjezdná 41, 420 32 Brno";

then what follows on the line joins it: flat, postcode, town (", Apt 5, Pärnu 80098"). Flats ("Suite 958")
and post-office boxes are found on their own. Street words are the single-word street suffixes and
prefixes of Faker's address providers (``data/pii_lexicon.json.gz``) and common abbreviations.

A recognizer in Python rather than patterns: a regular expression holding ~900 street words as
alternatives cost 6 ms on a 1,000-character prompt; looking at the words beside each number costs
microseconds, and a text without digits is not searched at all (``pii_engine.POSSIBLE``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

from llmdock.privacy.recognizers import (
    LoosePhoneRecognizer,
    NameListRecognizer,
    age_recognizer,
    date_of_birth_recognizer,
    id_number_recognizer,
    lexicon,
    result,
)

# Street-type abbreviations, as written in addresses of English-speaking countries and a few others.
ABBREVIATIONS = frozenset("st rd ave av blvd ln dr ct pl sq hwy pkwy ter cres str ul al cl avda bd".split())
# These stand after the street's name ("Hoog St"), never before it.
AFTER_ONLY = frozenset("st dr rd ln ct sq ave blvd hwy pkwy ter cres".split())
PARTICLES = frozenset("de del della di do da du des la le los las dos das van von na v".split())
_PARTICLE = r"(?:de|del|della|di|do|da|du|des|la|le|les|los|las|dos|das|van|von|am|an|der|sur|sul|en|on|upon)"
_NUMBER = re.compile(r"(?<![\w.,/-])\d{1,5}[A-Za-z]?(?:[ \t]?[-/][ \t]?\d{1,5}[A-Za-z]?)?(?![\w/]|[.,]\d)")
_WORD = re.compile(r"[^\s,]+")
_CAP = r"[^\W\d_a-z][\w'\u2019.-]*"
_POSTCODE = (
    r"(?:\d{2}-\d{3}|\d{5}-\d{3,4}|\d{3}[ \t]\d{2}|\d{4,8}|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}|"
    r"[A-Z]\d[A-Z][ \t]?\d[A-Z]\d)"
)
_UNIT = (
    r"(?:Apt|Apartment|Appartamento|Apartamento|Suite|Ste|Unit|Flat|Studio|Floor|Fl|Level|Piso|Piano|Puerta|"
    r"Planta|Escalera|Bloque|Etage|Étage|Stock|Room|Rm|H\.No|No|#)\.?"
)
# After the street, on the same line: flats, postcodes, the town's words.
_TAIL = re.compile(
    rf"(?:[ \t]*,?[ \t]+(?:{_UNIT}[ \t]*\w+|{_POSTCODE}|(?:{_PARTICLE}[ \t]+){{0,3}}{_CAP})){{1,6}}"
)
# How far from a house number its street, postcode and town can be: a bound, so that a 1 MB line full of
# numbers costs linear time.
REACH = 100
_POSTCODE_TOWN = re.compile(rf",[ \t]+(?:{_POSTCODE}[ \t]+{_CAP}|(?:{_CAP}[ \t]+){{1,3}}{_POSTCODE})\b")
_LETTERS = re.compile(r"[^\W\d_]{2}")
_NAME_BEFORE = re.compile(rf"(?:{_CAP}[ \t]+){{1,3}}$")
_ON_THEIR_OWN = re.compile(
    rf"\b{_UNIT}[ \t]*\d{{1,5}}[A-Za-z]?\b|\b(?:P\.?[ \t]?O\.?[ \t]?Box|Postfach|Apartado|Caixa Postal)[ \t]+\d{{1,6}}\b"
)


@functools.cache
def street_words() -> tuple[frozenset[str], tuple[str, ...]]:
    """(street words, lower-case; the ones long enough to end a compound name: "strasse", "vej" …)."""
    words = frozenset(w.rstrip(".") for w in lexicon()["street_words"]) | ABBREVIATIONS
    return words, tuple(w for w in words if len(w) >= 3)


def _cap(word: str) -> bool:
    return word[:1].isupper()


class StreetAddressRecognizer(EntityRecognizer):
    def __init__(self, supported_language: str = "en") -> None:
        self.words, self.suffixes = street_words()
        self.common = lexicon()["common_words"]
        super().__init__(
            supported_entities=["STREET_ADDRESS"],
            name="StreetAddressRecognizer",
            supported_language=supported_language,
        )

    def load(self) -> None:
        pass

    def _street(self, word: str) -> bool:
        return word.rstrip(".").lower() in self.words

    def _number_first(self, after: str) -> int | None:
        """Where the street ends in ``after`` (the text following the number), if it is one."""
        words = [(m.group(), m.end()) for m in _WORD.finditer(after[:80])][:6]
        if not words:
            return None
        if self._street(words[0][0]):
            end = None  # "boulevard Amiral Courbet", "avenue de Vidal": the name's last capitalised word
            for word, stop in words[1:5]:
                if not (_cap(word) or word in PARTICLES):
                    break
                end = stop if _cap(word) else end
            return end
        for word, stop in words[1:5]:
            if self._street(word):
                return stop if all(_cap(w) for w, _ in words[: words.index((word, stop))]) else None
            if not _cap(word):
                return None
        return None

    def _street_first(self, before: str) -> int | None:
        """Where the street starts in ``before`` (the text preceding the number), if it is one."""
        words = [(m.group(), m.start()) for m in _WORD.finditer(before[-80:])][-6:]
        offset = max(0, len(before) - 80)
        last, found = len(words) - 1, None
        for i in range(last, max(-1, last - 5), -1):
            word, start = words[i]
            lower = word.rstrip(".").lower()
            if lower in self.words and lower not in AFTER_ONLY:
                if _cap(word) or word.endswith(".") or lower not in self.common:
                    found = offset + start  # "Via Pisanelli 104", "ul. Leśna 99", "ulica Mickiewicza 7"
                first = i
                while i == last and first > max(0, i - 3) and _cap(words[first - 1][0]):
                    first -= 1  # "Karu põik 61": a lower-case street word after the name
                if first < i:
                    found = offset + words[first][1]
            elif i >= last - 1 and _cap(word) and len(lower) > 5 and lower.endswith(self.suffixes):
                found = offset + start  # a compound name: "Mattenstrasse 108", "Florence-Gorlitz-Weg 6"
            if not (_cap(word) or word in PARTICLES or (i == last and lower in self.words)):
                break
        return found

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        found = []
        for m in _NUMBER.finditer(text):
            if not _LETTERS.search(text, max(0, m.start() - 30), m.end() + 30):
                continue  # no word near it: a number in a table, a list of digits
            line_start = text.rfind("\n", max(0, m.start() - REACH), m.start()) + 1
            line_start = max(line_start, m.start() - REACH)
            line_end = text.find("\n", m.end(), m.end() + REACH)
            line_end = min(len(text), m.end() + REACH) if line_end < 0 else line_end
            before, after = text[line_start : m.start()], text[m.end() : line_end]
            start, end, score = m.start(), m.end(), 0.6
            if (stop := self._number_first(after)) is not None:
                end = m.end() + stop
            elif (begin := self._street_first(before)) is not None:
                start = line_start + begin
            elif (town := _POSTCODE_TOWN.match(after)) and (name := _NAME_BEFORE.search(before)):
                start, end, score = line_start + name.start(), m.end() + town.end(), 0.5
            else:
                continue
            if tail := _TAIL.match(text, end, line_end):
                end = tail.end()
            found.append(result("STREET_ADDRESS", start, end, score, self))
        for m in _ON_THEIR_OWN.finditer(text):
            tail = _TAIL.match(text, m.end(), m.end() + REACH)
            end = tail.end() if tail and "\n" not in tail.group() else m.end()
            found.append(result("STREET_ADDRESS", m.start(), end, 0.45, self))
        return found


def own_recognizers(entities: set[str], language: str) -> list[EntityRecognizer]:
    """llmdock's recognizers (this module's and ``llmdock.privacy.recognizers``') that serve ``entities``."""
    makers = {
        "PERSON": NameListRecognizer,
        "STREET_ADDRESS": StreetAddressRecognizer,
        "PHONE_NUMBER": LoosePhoneRecognizer,
        "DATE_OF_BIRTH": date_of_birth_recognizer,
        "AGE": age_recognizer,
        "ID_NUMBER": id_number_recognizer,
    }
    return [make(language) for entity, make in makers.items() if entity in entities]
