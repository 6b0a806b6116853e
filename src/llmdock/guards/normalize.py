"""Normalisation against obfuscation: the cheap first layer in front of every text classifier.

Attackers hide instructions from filters with tricks that a model still reads through: homoglyphs
(Cyrillic ``\u0456`` for ``i``), zero-width and other invisible characters, Unicode tag characters that smuggle
ASCII, full-width and mathematical letters, leetspeak (``1gn0r3``), letters spaced out (``I g n o r e``)
and base64 payloads. :func:`normalize` undoes them and reports which tricks it found; detectors classify
the normalised view and record the trick as the layer that fired when it mattered. The same function runs
on the training data, so the classifier learns the normalised form.

Homoglyphs come from Unicode's confusables table as shipped by ``confusable-homoglyphs``; NFKC folds the
compatibility forms. The mapping tables are built once, and ``str.translate`` applies them in C.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache

LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a",
                      "$": "s", "!": "i", "|": "l", "+": "t", "€": "e"})  # fmt: skip
# Tokens holding a leet character; only those that also hold a letter are rewritten ("$40" stays).
_LEET_TOKEN = re.compile(r"(?<!\S)[^\s0-9@$|+€]*[0-9@$|+€]\S*")
_SPACED_HINT = re.compile(r"(?<!\w)\w[ .\-_\\/*|]\w[ .\-_\\/*|]\w[ .\-_\\/*|]\w")
_SPACED = re.compile(r"(?<![^\W_])(?:[^\W\d_][ .\-_\\/*|]){3,}[^\W\d_](?![^\W_])")
_SPACED_SEPARATORS = re.compile(r"[ .\-_\\/*|]")
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_TAG_START, _TAG_END = 0xE0000, 0xE007F
_TAGS = re.compile("[\U000e0000-\U000e007f]")
_NON_ASCII = re.compile("[^\x00-\x7f]")
_SURROGATES = re.compile(
    "[\ud800-\udfff]"
)  # lone halves (JSON "\\ud800" decodes to one); no codec takes them
_QUOTES = str.maketrans(
    {"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"'}
)


@dataclass(slots=True)
class Normalized:
    text: str  # what classifiers see: the folded text, then any decoded payloads on their own lines
    tricks: list[str] = field(default_factory=list)  # e.g. ["homoglyph", "base64"]

    @property
    def layer(self) -> str:
        return "normalize:" + "+".join(self.tricks) if self.tricks else ""


@cache
def _confusable_table() -> dict[int, str]:
    """Every character Unicode calls confusable with an ASCII letter or digit, mapped to that character."""
    from confusable_homoglyphs import confusables

    table: dict[int, str] = {}
    for char, homoglyphs in confusables.confusables_data.items():
        targets = [char] + [h["c"] for h in homoglyphs]
        ascii_target = next((t for t in targets if len(t) == 1 and t.isascii() and t.isalnum()), None)
        if ascii_target is None:
            continue
        for t in targets:
            if len(t) == 1 and not t.isascii():
                table[ord(t)] = ascii_target.lower()
    return table


def warm_up() -> None:
    """Build the confusables table now (loading it takes a few hundred ms), not in the first request."""
    _confusable_table()


def _invisible(text: str) -> tuple[str, str]:
    """Drop format characters (zero-width, bidi controls); decode tag characters that smuggle ASCII.

    Only the distinct non-ASCII characters are looked up (no ASCII character is a format character),
    and ``str.translate`` drops them in C.
    """
    hidden = {
        ch
        for ch in set(_NON_ASCII.findall(text))
        if _TAG_START <= ord(ch) <= _TAG_END or unicodedata.category(ch) == "Cf"
    }
    if not hidden:
        return text, ""
    smuggled = "".join(
        chr(ord(ch) - _TAG_START) for ch in _TAGS.findall(text) if 0x20 <= ord(ch) - _TAG_START < 0x7F
    )
    return text.translate(dict.fromkeys(map(ord, hidden))), smuggled


def _decode_base64(text: str) -> list[str]:
    found = []
    for match in _BASE64.finditer(text):
        token = match.group()
        if token.isalpha() and (token.islower() or token.isupper()):
            continue  # a long word, not an encoding
        try:
            raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        printable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
        if len(decoded) >= 8 and printable / len(decoded) > 0.9 and any(ch.isalpha() for ch in decoded):
            found.append(decoded)
    return found


def _unleet(match: re.Match[str]) -> str:
    token = match.group()
    return token.translate(LEET) if any(c.isalpha() for c in token) else token


def _unspace(match: re.Match[str]) -> str:
    return _SPACED_SEPARATORS.sub("", match.group())


def normalize(text: str) -> Normalized:
    """The text with obfuscation undone, lower-cased; decoded payloads appended on lines of their own."""
    tricks: list[str] = []
    extra: list[str] = []
    payloads = _decode_base64(text) if len(text) >= 16 else []
    if not text.isascii():
        text = _SURROGATES.sub("\ufffd", text)
        visible, smuggled = _invisible(text)
        if len(visible) + len(smuggled) < len(text):
            tricks.append("invisible")
        text = visible
        if smuggled:
            extra.append(smuggled)
            tricks.append("tag-smuggling")
        folded = unicodedata.normalize("NFKC", text).translate(_QUOTES)
        mapped = folded.translate(_confusable_table())
        if mapped != folded and _mixes_scripts(folded):
            tricks.append("homoglyph")
        text = mapped
    lowered = text.lower()
    text = _LEET_TOKEN.sub(_unleet, lowered)
    if text != lowered:
        tricks.append("leetspeak")
    if _SPACED_HINT.search(text):
        spaced = _SPACED.sub(_unspace, text)
        if spaced != text:
            tricks.append("spacing")
            text = spaced
    if payloads:
        tricks.append("base64")
        extra += [normalize(p).text for p in payloads]
    return Normalized("\n".join([text, *extra]) if extra else text, tricks)


def _mixes_scripts(text: str) -> bool:
    """A word that mixes ASCII letters with non-ASCII letters: the signature of homoglyph evasion."""
    return any(
        not word.isascii()
        and any(c.isascii() and c.isalpha() for c in word)
        and any(not c.isascii() and c.isalpha() for c in word)
        for word in text.split()
    )
