"""Which of a PII engine's recognizers read a text one line at a time: what makes reusing findings exact.

The trace mask analyses all of a trace's strings in one call, joined by a blank line
(``PiiEngine.redact_many``). A finding the ``pii`` guard already made on one of those strings (the user's
message, analysed alone) can stand in for that string's share of the joined analysis only if the joined
analysis finds, inside that string, exactly what the analysis of the string alone found. That holds when
every recognizer that runs is *separable*:

- none of its matches can hold a line break, so no match crosses a blank line, and an assertion at the edge
  of a string (``\\b``, ``^``/``$`` with MULTILINE, a look-behind that cannot read a line break) decides the
  same whether a line break or the end of the text is beside it;
- nothing else it computes reads beyond the match (its ``analyze`` is Presidio's pattern loop, or it is one
  of llmdock's own and names the expressions it reads the text with: ``line_patterns``).

Context words are the other way strings can touch: a weak finding near the start of a string looks at the words
before it, which in the joined text belong to the string before. ``presidio_setup.context_enhancer`` notes when
that can happen, and reuse is then declined (see ``pii_engine.PiiEngine.find_many``).

The check reads each regular expression's parse tree (``re._parser``, which reads the syntax Presidio's
``regex`` patterns use here); a pattern it cannot read, or written in ``regex``-only syntax, counts as not
separable, so the engine falls back to the joined analysis.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from re import _constants as sre_c  # type: ignore[attr-defined]  # Python 3.11+ (sre_* are deprecated)
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

NEWLINE = ord("\n")
# Character classes that hold a line break.
_NEWLINE_CATEGORIES = {
    sre_c.CATEGORY_SPACE,
    sre_c.CATEGORY_NOT_WORD,
    sre_c.CATEGORY_NOT_DIGIT,
    sre_c.CATEGORY_LINEBREAK,
}
# Syntax of the ``regex`` package that re's parser would read differently (POSIX classes, Unicode properties).
_KNOWN_FLAGS = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE  # same values in ``regex``
_REGEX_ONLY = re.compile(r"\[\[:|\\[pPXNRKLGVmM]")


def newline_free(pattern: str, flags: int) -> bool:
    """Whether no match of ``pattern`` can hold a line break and its assertions decide the same at the edge
    of a text as beside a line break (see the module docstring). False when in doubt."""
    if _REGEX_ONLY.search(pattern):
        return False
    try:
        parsed = sre_parse.parse(pattern, flags & _KNOWN_FLAGS)
    except (re.error, OverflowError, RecursionError):
        return False
    flags = parsed.state.flags
    return _free(list(parsed), flags)


def _accepts_newline(op: Any, av: Any, flags: int) -> bool:
    if op is sre_c.LITERAL:
        return bool(av == NEWLINE)
    if op is sre_c.NOT_LITERAL:
        return bool(av != NEWLINE)
    if op is sre_c.ANY:
        return bool(flags & re.DOTALL)
    # IN: a set of items, perhaps negated
    negate = False
    hit = False
    for item_op, item_av in av:
        if item_op is sre_c.NEGATE:
            negate = True
        elif item_op is sre_c.LITERAL:
            hit = hit or item_av == NEWLINE
        elif item_op is sre_c.RANGE:
            hit = hit or item_av[0] <= NEWLINE <= item_av[1]
        elif item_op is sre_c.CATEGORY:
            hit = hit or item_av in _NEWLINE_CATEGORIES
        else:
            return True  # something this reading does not know: assume it could
    return hit != negate


def _free(items: list[Any], flags: int) -> bool:
    for op, av in items:
        if op in (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY, sre_c.IN):
            if _accepts_newline(op, av, flags):
                return False
        elif op is sre_c.AT:
            if av in (sre_c.AT_BEGINNING, sre_c.AT_END) and not flags & re.MULTILINE:
                return False  # ^ or $ of the whole text: true at a string's edge only when it is alone
            if av in (sre_c.AT_BEGINNING_STRING, sre_c.AT_END_STRING):
                return False
        elif op is sre_c.SUBPATTERN:
            add, remove = av[1], av[2]
            if not _free(list(av[3]), (flags | add) & ~remove):
                return False
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            if not _free(list(av[2]), flags):
                return False
        elif op is sre_c.BRANCH:
            if not all(_free(list(branch), flags) for branch in av[1]):
                return False
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            if not _free(list(av[1]), flags):
                return False
        elif op is getattr(sre_c, "ATOMIC_GROUP", None):
            if not _free(list(av), flags):
                return False
        elif op is sre_c.GROUPREF:
            continue  # repeats text the group matched, which holds no line break
        else:
            return False  # conditional groups and anything newer: assume the worst
    return True


def separable(recognizer: Any) -> bool:
    """Whether ``recognizer`` finds in a joined text exactly what it finds in each part (module docstring)."""
    from presidio_analyzer import EntityRecognizer, PatternRecognizer

    kind = type(recognizer)
    if kind.enhance_using_context is not EntityRecognizer.enhance_using_context:
        return False  # reads the other recognizers' results, anywhere in the text
    regexes: list[tuple[str, int]] | None = getattr(recognizer, "line_patterns", None)
    if regexes is not None:  # llmdock's own recognizers say which expressions they read the text with
        return all(newline_free(p, f) for p, f in regexes)
    if not isinstance(recognizer, PatternRecognizer) or recognizer.deny_list:
        return False
    if kind.analyze is not PatternRecognizer.analyze:
        return False  # an override may read more than its matches
    flags = recognizer.global_regex_flags or 0
    patterns: list[Any] = getattr(recognizer, "patterns", [])
    return all(newline_free(p.regex, flags) for p in patterns)


def separable_entities(entities: Iterable[str], recognizers: Iterable[Any]) -> frozenset[str]:
    """The entities whose recognizers are all separable: where only these are looked for, an analysis of
    texts joined by a blank line finds in each exactly what an analysis of that text alone finds."""
    recognizers = list(recognizers)
    return frozenset(
        e for e in entities if all(separable(r) for r in recognizers if e in r.supported_entities)
    )
