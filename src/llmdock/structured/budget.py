"""Grammars whose every answer fits a token budget: a re-ask after an answer was cut off at ``max_tokens``.

A schema that leaves strings or arrays unbounded (or bounds them generously: arrays of objects of arrays)
lets a small model write past ``max_tokens``; asking it to be shorter does not always help. So the re-ask
after a cut gets a grammar made from a *narrowed* copy of the schema: ``maxLength`` of free strings and
``maxItems`` of arrays lowered (never below ``minLength``/``minItems``), extra properties closed, until the
longest text the grammar admits fits the budget. Every answer of the narrowed schema is an answer of the
client's schema (only upper bounds shrink), and the answer is still validated against the client's schema.

The longest text is counted in characters as llama.cpp's converter writes it (one optional blank after each
token, see its ``space`` rule). A token is at least one character of ASCII text, so for ASCII answers the
count bounds the tokens and the answer closes within the budget by construction. Characters outside ASCII
and ``\\uXXXX`` escapes can cost more tokens than characters, and a ``pattern`` whose matches have no
longest length counts as :data:`PATTERN_CHARS`: for those the fit is an estimate, and a cut answer is still
never returned.

A schema whose shortest answers are already longer than the budget (by the worst-case count) gets its
tightest narrowing. What cannot be bounded is not narrowed (:func:`fit_schema` returns None and the plain
grammar is used): an object without declared properties (``{"type": "object"}``; JSON-object mode gets
:func:`object_caps` instead), a
schema without a type, ``allOf``, recursive ``$ref``.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any

import orjson

from llmdock.structured.grammar import split_type_lists

PATTERN_CHARS = 32  # what a string with an unbounded ``pattern`` (``^[a-z]+$``) is counted as
SHORTEST = 8  # free strings are cut below this many characters only when nothing else is left to cut
# Longest texts of the converter's fixed rules, quotes included (see llama_cpp.llama_grammar).
INTEGER_CHARS = 17  # "-" and up to 16 digits
NUMBER_CHARS = 53  # integer part, "." and 16 digits, "e", a sign and an integer exponent
FORMAT_CHARS = {"date": 12, "time": 20, "date-time": 31, "uuid": 38}
BLANK = 1  # the optional blank the converter allows after every token
_CAPS = 1 << 20  # "no cap yet": larger than any budget


def _pattern_width(pattern: str) -> int:
    """Most characters a match of ``pattern`` has (Python's regex parser measures it); unbounded or
    unparsable: :data:`PATTERN_CHARS`."""
    try:
        _, most = re._parser.parse(pattern).getwidth()  # type: ignore[attr-defined]
    except (re.error, RecursionError, OverflowError):
        return PATTERN_CHARS
    return PATTERN_CHARS if most >= re._constants.MAXREPEAT else int(most)  # type: ignore[attr-defined]


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any] | None:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def longest(schema: dict[str, Any]) -> float:
    """Characters of the longest JSON text the converter's grammar admits for ``schema`` (inf: unbounded)."""
    schema = split_type_lists(schema)
    return _Measure(schema).size(schema, ())


class _Measure:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def size(self, node: Any, seen: tuple[str, ...]) -> float:
        if not isinstance(node, dict):
            return math.inf if node is not False else 0  # true: any value
        if "$ref" in node:
            ref = node["$ref"]
            target = _resolve(self.root, ref) if isinstance(ref, str) else None
            if target is None or ref in seen:
                return math.inf
            return self.size(target, (*seen, ref))
        if "const" in node:
            return len(orjson.dumps(node["const"])) + BLANK
        if "enum" in node:
            return max((len(orjson.dumps(v)) for v in node["enum"]), default=0) + BLANK
        for key in ("anyOf", "oneOf"):
            if key in node:
                return max((self.size(s, seen) for s in node[key]), default=math.inf)
        if "allOf" in node:
            return math.inf
        kind = node.get("type")
        if kind == "object" or (kind is None and "properties" in node):
            return self._object(node, seen)
        if kind == "array" or (kind is None and ("items" in node or "prefixItems" in node)):
            return self._array(node, seen)
        if kind == "string":
            return self._string(node)
        fixed = {"integer": INTEGER_CHARS, "number": NUMBER_CHARS, "boolean": 5, "null": 4}
        return fixed[kind] + BLANK if isinstance(kind, str) and kind in fixed else math.inf

    def _object(self, node: dict[str, Any], seen: tuple[str, ...]) -> float:
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if (extra is not None and extra is not False) or (extra is None and "properties" not in node):
            return math.inf  # any number of extra properties (the converter's "any object")
        # "{" blank, per property: "key" blank ":" blank value, "," blank between them, "}" blank
        total: float = 2 * (1 + BLANK) + max(0, len(props) - 1) * (1 + BLANK)
        for key, sub in props.items():
            total += len(orjson.dumps(key)) + BLANK + 1 + BLANK + self.size(sub, seen)
        return total

    def _array(self, node: dict[str, Any], seen: tuple[str, ...]) -> float:
        prefix = node.get("prefixItems") or []
        items = node.get("items")
        most = node.get("maxItems")
        sizes = [self.size(s, seen) for s in prefix]
        if items is not False and (most is None or most > len(prefix)):
            if most is None:
                return math.inf
            sizes += [self.size(items if items is not None else True, seen)] * (most - len(prefix))
        elif most is not None:
            sizes = sizes[:most]
        return 2 * (1 + BLANK) + sum(sizes) + max(0, len(sizes) - 1) * (1 + BLANK)

    def _string(self, node: dict[str, Any]) -> float:
        fmt = node.get("format")
        for name, chars in FORMAT_CHARS.items():
            if fmt == name or (name == "uuid" and isinstance(fmt, str) and fmt.startswith("uuid")):
                return chars + BLANK
        if "pattern" in node:
            return 2 + _pattern_width(node["pattern"]) + BLANK
        most = node.get("maxLength")
        return math.inf if most is None else 2 + most + BLANK


def _narrow(node: Any, length: int, items: int, drop_optional: bool) -> None:
    """Cap free strings at ``length`` characters and arrays at ``items``, in place, everywhere in ``node``;
    with ``drop_optional``, objects lose the properties they do not require."""
    if isinstance(node, list):
        for sub in node:
            _narrow(sub, length, items, drop_optional)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    free_string = kind == "string" and not ({"format", "pattern", "enum", "const"} & node.keys())
    if free_string:
        node["maxLength"] = max(min(node.get("maxLength", _CAPS), length), node.get("minLength", 0))
    if kind == "array" or "items" in node or "prefixItems" in node:
        node["maxItems"] = max(min(node.get("maxItems", _CAPS), items), node.get("minItems", 0))
    if "properties" in node and node.get("additionalProperties") is not False:
        node["additionalProperties"] = False
    if drop_optional and isinstance(node.get("properties"), dict):
        required = set(node.get("required") or ())
        node["properties"] = {k: v for k, v in node["properties"].items() if k in required}
    for key, sub in node.items():
        if key in ("properties", "$defs", "definitions"):
            for inner in sub.values() if isinstance(sub, dict) else ():
                _narrow(inner, length, items, drop_optional)
        elif key in ("items", "prefixItems", "anyOf", "oneOf"):
            _narrow(sub, length, items, drop_optional)


def fit_schema(schema: dict[str, Any], budget: int) -> tuple[dict[str, Any], bool] | None:
    """A narrowed copy of ``schema`` whose longest answer is at most ``budget`` characters, and True.

    The schema itself when it already fits. Caps shrink in turn — string length halved, then the item count
    — so both stay as generous as the budget allows; strings go below :data:`SHORTEST` characters only after
    optional properties were dropped. If even the tightest narrowing is longer (its minimum lengths and counts
    are), that one and False: the count is a worst case (every number 16 digits long), so it usually still
    closes in time. None if nothing in the schema can be bounded (see the module docs).
    """
    base = split_type_lists(schema)
    if longest(base) <= budget:
        return schema, True
    # Last resort: optional properties dropped, strings down to 1 character, arrays empty where allowed.
    narrowed = base
    for drop_optional, shortest, fewest in ((False, SHORTEST, 1), (True, 1, 0)):
        length, items = budget, budget
        while True:
            narrowed = copy.deepcopy(base)
            _narrow(narrowed, length, items, drop_optional)
            if longest(narrowed) <= budget:
                return narrowed, True
            if length <= shortest and items <= fewest:
                break
            if items > fewest and not (length > shortest and length >= 4 * items):
                items = items // 2 if items > 4 else items - 1
            else:
                length = max(shortest, length // 2)
    return (narrowed, False) if longest(narrowed) < math.inf else None


# Caps of a JSON object with no schema (json_object mode), from generous to tight: (characters of a string or
# key, entries of a nested array or object). Each is tried with as many members as fit; the first that leaves
# room for enough members (4 with nested values, 2 without, 1 for the last) is used.
OBJECT_CAPS = ((64, 8), (48, 4), (32, 4), (32, 2), (32, 0), (24, 0), (16, 0), (8, 0), (4, 0), (1, 0))
OBJECT_NUMBER_DIGITS = 8  # most digits before and after the point of a number in a bounded object


def _member(key: int, value: int) -> int:
    """A '"key": value' member: quotes, a blank after the key, the colon and its blank."""
    return 2 + key + BLANK + 1 + BLANK + value


def _container(entries: int, entry: int) -> int:
    """An array or object of ``entries`` entries of ``entry`` characters: brackets, blanks, commas."""
    return 2 * (1 + BLANK) + entries * entry + max(0, entries - 1) * (1 + BLANK)


def object_caps(budget: int) -> tuple[int, int, int, int]:
    """(members, string characters, nested entries, number digits) of the most generous bounded JSON object
    whose longest text is at most ``budget`` characters; members 0 when only ``{}`` fits."""
    for chars, nested in OBJECT_CAPS:
        digits = min(OBJECT_NUMBER_DIGITS, max(1, chars // 2))
        scalar = max(2 + chars, 2 * digits + 2, 5) + BLANK  # a string, a number, false
        value = max(scalar, _container(nested, scalar), _container(nested, _member(chars, scalar)))
        members = (budget - 2 * (1 + BLANK) + 1 + BLANK) // (_member(chars, value) + 1 + BLANK)
        if members >= (4 if nested else 2) or (members >= 1 and chars == OBJECT_CAPS[-1][0]):
            return members, chars, nested, digits
    return 0, 0, 0, 0
