"""llmdock's own Presidio recognizers: PII in free text that Presidio's predefined ones miss.

- ``PERSON`` by name lists: capitalised words that are first names or surnames of Faker's 86 locales (word
  lists in ``data/pii_lexicon.json.gz``, built by bench/data/build_pii_lexicon.py), a run of them
  ("Maria J. Gonzalez", "Ludwig van Beethoven"), or a capitalised word after a title or a greeting
  ("Dr. Okafor", "Hi Jay,"). A name that is also a common English word ("Will", "May") counts only beside
  another name or after a title. Cheap (regular expressions and set look-ups); spaCy's statistical NER,
  when enabled, adds what the lists do not know.
- ``STREET_ADDRESS``: in ``llmdock.privacy.addresses``.
- ``PHONE_NUMBER`` as people write it: digit groups with spaces, dots, dashes, parentheses, a ``+`` country
  code, a ``(0)``, an extension. Numbers libphonenumber validates are found by Presidio's own recognizer;
  these shapes score below the threshold unless they look like a phone number (``+``, parentheses, a trunk
  ``0``, an extension) or a context word ("call", "phone", "mobile" …) stands before them.
- ``DATE_OF_BIRTH``: a date with "born", "birth", "DOB" … before it; ``AGE``: "aged 37", "a 37-year-old",
  "turned 37", "37 y/o"; ``ID_NUMBER``: a code with digits after "passport", "licence", "social security",
  "ID" … (Presidio's context words lift these from a score that alone stays below the threshold).
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from importlib import resources
from typing import Any, ClassVar

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult

LEXICON = "pii_lexicon.json.gz"
FLAGS = re.DOTALL | re.MULTILINE  # Presidio's default adds IGNORECASE: capitals matter here
TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Frau|Mme|Mlle|Sr|Sra|Srta|Dott|Ing)\.?"
GREETINGS = r"(?:Hi|Hello|Hey|Dear|Thanks|Thank you|Cheers|Regards|Best|Sincerely|Love)[,!]?"
PARTICLES = {"van", "von", "der", "den", "de", "da", "del", "della", "di", "du", "dos", "das", "le", "la",
             "bin", "ibn", "al", "el", "ter", "ten", "y", "zu"}  # fmt: skip
_CAP = r"[^\W\d_a-z][^\W\d_]*(?:['\u2019-][^\W\d_]+)*"  # a capitalised word: Maria, O'Neil, Jean-Luc
_PARTICLE = rf"(?:{'|'.join(sorted(PARTICLES))})"
# Capitalised words on one line, with initials and particles between them: "Julie van der Linden".
_NAME_RUN = re.compile(
    rf"{_CAP}(?:[ \t]+(?:[A-Z]\.|(?:{_PARTICLE}[ \t]+){{0,3}}{_CAP})){{0,5}}"
)  # at most 6 words
_AFTER_TITLE = re.compile(rf"\b{TITLES}[ \t]+({_CAP}(?:[ \t]+{_CAP})?)")
_AFTER_GREETING = re.compile(rf"\b{GREETINGS}[ \t]+({_CAP})\b")
# A name followed by one of these words names a thing after a person, not a person.
_EPONYM = re.compile(
    r"[ \t]+(?:disease|syndrome|disorder|palsy|sarcoma|lymphoma|tumou?r|sign|test|scale|effect|law|"
    r"principle|theorem|equation|distribution|prize|award|medal|university|college|street|avenue|road)\b"
)
_AFTER_INTRODUCTION = re.compile(
    rf"\b(?:[Mm]y name is|[Nn]amed|[Cc]alled|I'm|I am|[Tt]his is|[Mm]y (?:son|daughter|wife|husband|brother|"
    rf"sister|mother|father|mom|dad|friend|colleague|boss|partner|patient|client|neighbou?r))[ \t]+"
    rf"({_CAP}(?:[ \t]+{_CAP})?)"
)


@functools.cache
def lexicon() -> dict[str, frozenset[str]]:
    raw = resources.files("llmdock.privacy").joinpath("data", LEXICON).read_bytes()
    return {k: frozenset(v) for k, v in json.loads(gzip.decompress(raw)).items()}


def result(entity: str, start: int, end: int, score: float, recognizer: EntityRecognizer) -> RecognizerResult:
    metadata = {
        RecognizerResult.RECOGNIZER_NAME_KEY: getattr(recognizer, "name", ""),  # untyped in Presidio
        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,  # how Presidio pairs results and context
    }
    return RecognizerResult(entity, start, end, score, recognition_metadata=metadata)


class NameListRecognizer(EntityRecognizer):
    """Persons by first-name and surname lists (see the module docstring)."""

    def __init__(self, supported_language: str = "en") -> None:
        words = lexicon()
        self.first, self.last, self.common = words["first_names"], words["surnames"], words["common_words"]
        self.places = words["places"]
        super().__init__(
            supported_entities=["PERSON"], name="NameListRecognizer", supported_language=supported_language
        )

    def load(self) -> None:
        pass

    @property
    def line_patterns(self) -> list[tuple[str, int]]:
        """The expressions ``analyze`` reads the text with (privacy.separable: none reads across a line)."""
        expressions = (_NAME_RUN, _AFTER_TITLE, _AFTER_GREETING, _AFTER_INTRODUCTION, _EPONYM)
        return [(e.pattern, e.flags) for e in expressions]

    def _is_name(self, word: str) -> bool:
        return word in self.first or word in self.last

    def _plain(self, word: str) -> bool:
        """A name that is not also a common word or a place ("Paris")."""
        return self._is_name(word) and word.lower() not in self.common and word not in self.places

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        found = []
        for run in _NAME_RUN.finditer(text):
            words = [(m.group(), m.start()) for m in re.finditer(r"\S+", run.group())]
            # Leading words that are not names (sentence starts: "Ask", "Call") are not part of it.
            while words and not self._is_name(words[0][0]):
                words.pop(0)
            while words and (words[-1][0].lower() in PARTICLES or not self._is_name(words[-1][0])):
                if len(words) > 1 and self._plain(words[0][0]) and words[-1][0][0].isupper():
                    break  # "Marcello Cuttitta": an unknown surname after a known first name
                words.pop()
            if not any(self._plain(w) for w, _ in words):
                continue  # "Will May", "Can": names that are also common words need a title or a greeting
            start = run.start() + words[0][1]
            end = run.start() + words[-1][1] + len(words[-1][0])
            if len(words) == 1 and _EPONYM.match(text, end):
                continue  # "Lyme disease", "Kawasaki syndrome": named after, not about, a person
            score = 0.7 if len(words) > 1 else 0.5
            found.append(result("PERSON", start, end, score, self))
        for pattern in (_AFTER_TITLE, _AFTER_GREETING, _AFTER_INTRODUCTION):
            for m in pattern.finditer(text):
                if m.group(1).lower() not in self.common or self._is_name(m.group(1)):
                    found.append(result("PERSON", m.start(1), m.end(1), 0.6, self))
        return found


_NOT_PHONES = (  # dates, US social security numbers, years in a row
    re.compile(r"^\d{3}-\d{2}-\d{4}$"),
    re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$"),
    re.compile(r"^\d{1,2}[-./]\d{1,2}[-./](?:\d{2}|\d{4})$"),
    re.compile(r"^(?:19|20)\d{2}(?:\s+(?:19|20)\d{2})+$"),
)


_EXTENSION = re.compile(r"x|ext|#")


class LoosePhoneRecognizer(PatternRecognizer):
    """Phone numbers as people write them, whichever country (see the module docstring)."""

    SHAPE = (
        r"(?<![\w+/.,-])(?:\+\d{1,3}[ .-]?)?(?:\(0\)[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,11}"
        r"(?:[ .-]\d{2,8}){0,5}(?:[ ]?(?:x|ext\.?|extension|#)[ ]?\d{1,5})?(?!\w|[.,-]\d)"
    )
    # Presidio matches a context word inside a longer word ("tel" in "hotel"): no short ones.
    CONTEXT: ClassVar[list[str]] = ["phone", "call", "mobile", "reach", "fax", "office", "whatsapp", "contact", "number",
               "registered", "landline", "dial"]  # fmt: skip

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            name="LoosePhoneRecognizer",
            patterns=[Pattern("digit groups", self.SHAPE, 0.2)],
            context=self.CONTEXT,
            supported_language=supported_language,
            global_regex_flags=FLAGS,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = sum(ch.isdigit() for ch in _EXTENSION.split(pattern_text)[0])
        if not 6 <= digits <= 15 or any(shape.match(pattern_text) for shape in _NOT_PHONES):
            return False
        return None  # keep the pattern's score; invalidate_result decides the strong shapes

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: Any = None, regex_flags: Any = None
    ) -> Any:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for r in results:
            value = text[r.start : r.end]
            digits = sum(ch.isdigit() for ch in _EXTENSION.split(value)[0])
            grouped = bool(re.search(r"\d[\s.-]\d", value))
            strong = value.startswith(("+", "(", "0")) or re.search(r"x|ext|#", value)
            if digits >= 7 and (strong or (grouped and digits >= 9)):
                r.score = max(r.score, 0.5)
        return results


def _pattern_recognizer(
    entity: str, patterns: list[Pattern], language: str, context: list[str] | None = None
) -> PatternRecognizer:
    name = "".join(part.title() for part in entity.split("_")) + "Recognizer"
    return PatternRecognizer(
        supported_entity=entity,
        name=name,
        patterns=patterns,
        context=context or [],
        supported_language=language,
        global_regex_flags=FLAGS,
    )


def date_of_birth_recognizer(language: str = "en") -> PatternRecognizer:
    months = (
        r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
        r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
    )
    patterns = [
        Pattern("numeric date", r"\b\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})\b", 0.1),
        Pattern("ISO date", r"\b(?:19|20)\d{2}-\d{1,2}-\d{1,2}\b", 0.1),
        Pattern("day month year", rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{months}\s*,?\s+\d{{4}}\b", 0.1),
        Pattern("month day year", rf"\b{months}\s+\d{{1,2}}(?:st|nd|rd|th)?\s*,?\s+\d{{4}}\b", 0.1),
    ]
    context = ["born", "birth", "birthday", "dob", "d.o.b", "birthdate", "né", "née", "geboren"]
    return _pattern_recognizer("DATE_OF_BIRTH", patterns, language, context)


def age_recognizer(language: str = "en") -> PatternRecognizer:
    patterns = [
        Pattern("n years old", r"\b\d{1,3}(?:\s|-)?(?:years?|yrs?|y)(?:\s|-|/)?(?:old|o\b)", 0.6),
        Pattern("aged n", r"\b(?:aged|age of|age|turned|turn|turning)\s+\d{1,3}\b(?!\s*(?:%|percent))", 0.5),
    ]
    return _pattern_recognizer("AGE", patterns, language)


# Presidio matches a context word inside a longer word ("pan" in "Brakpan"): no short ones.
ID_CONTEXT = ["ssn", "social", "security", "passport", "licence", "license", "identity", "national",
              "insurance", "nif", "dni", "pesel", "personnummer", "fiscal", "aadhaar", "identification"]  # fmt: skip


def id_number_recognizer(language: str = "en") -> PatternRecognizer:
    # At least 5 digits among the code's first 40 characters (bounded: a lookahead that may scan the
    # whole text from every word would make a 1 MB text quadratic).
    code = r"\b(?=[A-Z0-9 -]{0,40}?\d[A-Z -]{0,40}?\d[A-Z -]{0,40}?\d[A-Z -]{0,40}?\d[A-Z -]{0,40}?\d)"
    code += r"[A-Z0-9][A-Z0-9-]{2,40}(?:[ -][A-Z0-9-]{1,40}){0,4}\b"
    return _pattern_recognizer("ID_NUMBER", [Pattern("code with digits", code, 0.05)], language, ID_CONTEXT)
