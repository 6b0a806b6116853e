"""What a regular expression requires of any text it matches, read off its parse tree.

The guards run dozens of patterns over every text, and most texts match none of them. A pattern whose
every match must contain some literal string, or a long run of letters and digits, cannot match a text
that lacks it, so a cheap look at the text (``in``, one scan for the longest run) decides whether the
pattern needs to run at all. The answers come from the standard library's own regular-expression parser
(``re._parser``: private, but the module ``re`` itself compiles with), and are exact: they only skip
patterns that could not match, never approximate one.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

_parser = importlib.import_module("re._parser")  # typed as a plain module: its API is not public
_constants = importlib.import_module("re._constants")
_WORDISH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def required_run(pattern: re.Pattern[str]) -> int:
    r"""A length every match of ``pattern`` has a run of at least that many word characters or hyphens in
    (0 when the pattern does not require one): ``ghp_[A-Za-z0-9_]{36}`` gives 36.

    Read off the pattern's parse tree (the standard library's own parser): a repeat, at the top level of
    the pattern or inside a group there (never inside an alternative or an optional part), of a character
    class made only of ASCII letters, digits, ``_`` and ``-``. Those match only characters of ``[\w-]``,
    even case-insensitively (the Kelvin sign is a letter), so a text whose longest ``[\w-]`` run is
    shorter cannot match and the pattern need not run: exact, not a heuristic.
    """
    c = _constants

    def wordish(items: list[tuple[Any, Any]]) -> bool:
        for op, av in items:
            if op is c.LITERAL and chr(av) in _WORDISH:
                continue
            if op is c.RANGE and all(chr(code) in _WORDISH for code in range(av[0], av[1] + 1)):
                continue
            if op is c.CATEGORY and av in (c.CATEGORY_DIGIT, c.CATEGORY_WORD):
                continue
            return False
        return True

    def run(sequence: Any) -> int:
        best = 0
        for op, av in sequence:
            if op is c.SUBPATTERN:
                best = max(best, run(av[-1]))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and len(av[2]) == 1:
                item_op, item = av[2][0]
                if (item_op is c.IN and wordish(item)) or (item_op is c.LITERAL and chr(item) in _WORDISH):
                    best = max(best, av[0])
        return best

    return run(_parser.parse(pattern.pattern, pattern.flags))


def required_literals(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Strings one of which every match of ``pattern`` contains (``None``: no such list found): of
    :func:`required_groups`, the one whose shortest string is longest."""
    return _best(required_groups(pattern))


def required_groups(pattern: re.Pattern[str]) -> list[tuple[str, ...]]:
    """Groups of strings such that every match of ``pattern`` contains one string of each group.

    A text that lacks every string of any one group cannot match, so the pattern need not run on it. The
    groups come from the elements every match goes through (the pattern's top level, groups there, and
    repeats of at least one): a run of literal characters, or an alternation whose every branch has such
    a group (one string from each branch's best group). Case-insensitive patterns (or groups) give
    nothing: their literals do not appear verbatim.
    """
    if pattern.flags & re.IGNORECASE:
        return []
    return _groups(_parser.parse(pattern.pattern, pattern.flags))


def _best(groups: list[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The group whose shortest string is longest (the first of equals): likely the rarest in a text."""
    best: tuple[str, ...] | None = None
    for group in groups:
        if best is None or min(map(len, group)) > min(map(len, best)):
            best = group
    return best


def _groups(sequence: Any) -> list[tuple[str, ...]]:
    c = _constants
    found: list[tuple[str, ...]] = []
    items = list(sequence)
    i = 0
    while i < len(items):
        op, av = items[i]
        if op is c.LITERAL:
            j = i
            while j < len(items) and items[j][0] is c.LITERAL:
                j += 1
            found.append(("".join(chr(code) for _, code in items[i:j]),))
            i = j
            continue
        if op is c.SUBPATTERN and not av[1] & re.IGNORECASE:
            found += _groups(av[-1])
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT) and av[0] >= 1:
            found += _groups(av[2])
        elif op is c.BRANCH:
            branches = [_best(_groups(branch)) for branch in av[1]]
            if all(b is not None for b in branches):
                found.append(tuple(s for b in branches if b is not None for s in b))
        i += 1
    return found
