"""GBNF grammars for llama.cpp's constrained decoding, built with llama.cpp's own tools.

A JSON Schema becomes a grammar through ``llama_cpp.llama_grammar.json_schema_to_gbnf`` (llama.cpp's
converter); "any JSON object" is llama.cpp's ``JSON_GBNF``. Three corrections are made to the converter's
output. Two so that what the grammar allows is valid JSON: its ``char`` rule (a character inside a string)
and its ``dot`` rule (``.`` in a ``pattern``) admit raw control characters and, for ``dot``, an unescaped
quote, which no JSON parser accepts; they are narrowed to exclude them, as llama.cpp's newer C++ converter
does. And its ``date`` rule (also inside ``date-time``) admits ``0000-01-01`` and ``2023-02-31``, which the
``date`` format check refuses; it is replaced by a rule of real calendar dates.

Integers and numbers with bounds (``minimum``, ``maximum`` and their exclusive forms) get grammar rules
that admit only values within them (:mod:`llmdock.structured.numeric`); the converter itself ignores bounds.

One correction is made to its input: a schema whose ``type`` is a list (``["string", "null"]``) loses its
other keywords in the converter (``maxLength`` among them), so it is first written as the equivalent
``anyOf`` of one schema per type.

Every grammar is parsed by llama.cpp (without a model) before use: llama-cpp-python hands an unparsable
grammar's null sampler on to the sampler chain, so an unchecked grammar could crash the process.
"""

from __future__ import annotations

from typing import Any

import orjson

from llmdock.structured import numeric

STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
# The converter's date admits year 0000 and 31 days in every month, which no date parser accepts; this one
# admits exactly the calendar dates of years 0001-9999 (29 February in leap years only).
STRICT_DATE = [
    'date ::= llmdock-year "-" llmdock-month-day | llmdock-leap-year "-02-29"',
    'llmdock-year ::= [1-9] [0-9]{3} | "0" ([1-9] [0-9]{2} | "0" ([1-9] [0-9] | "0" [1-9]))',
    'llmdock-month-day ::= ("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01])'
    ' | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8])',
    'llmdock-leap-year ::= [0-9] [0-9] llmdock-leap-yy | llmdock-leap-yy "00"',
    'llmdock-leap-yy ::= "0" [48] | [2468] [048] | [13579] [26]',
]
STRICT_DOT = r'dot ::= [^"\\\x7F\x00-\x1F]'
CALLS_RULE = "llmdock-tool-calls"
TEXT_RULE = "llmdock-text"
# Free text for tool_choice "auto": anything that does not open with "[" (which starts a tool call) or a
# blank, so a text answer and a call are told apart by their first character.
FREE_TEXT = rf"{TEXT_RULE} ::= [^\[\x00-\x20] [^\x00]*"


_NOT_PLAIN = frozenset(
    {"$ref", "anyOf", "oneOf", "allOf", "const", "enum"}
)  # the converter handles these first


class GrammarUnavailable(Exception):
    """The converter cannot express a schema (or llama.cpp cannot parse the result); the caller falls back."""


def parses(gbnf: str) -> bool:
    """Whether llama.cpp's grammar parser accepts ``gbnf`` (no model needed)."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, gbnf.encode("utf-8"), b"root")
    if not sampler:
        return False
    llama_cpp.llama_sampler_free(sampler)
    return True


def _checked(gbnf: str) -> str:
    if not parses(gbnf):
        raise GrammarUnavailable("llama.cpp cannot parse the grammar made from the schema")
    return gbnf


_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples"})  # values, not schemas
_KEEP_OUTSIDE = frozenset({"$defs", "definitions", "$schema", "$id", "title", "description"})


def split_type_lists(node: Any) -> Any:
    """``{"type": [a, b], ...}`` as ``{"anyOf": [{"type": a, ...}, {"type": b, ...}]}``, everywhere in a schema.

    Equivalent in JSON Schema (a keyword about strings says nothing about null), and it keeps the keywords the
    converter would drop for a type list.
    """
    if isinstance(node, list):
        return [split_type_lists(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: v if k in _DATA_KEYWORDS else split_type_lists(v) for k, v in node.items()}
    types = out.get("type")
    if not isinstance(types, list) or "anyOf" in out or "oneOf" in out:
        return out
    rest = {k: v for k, v in out.items() if k != "type" and k not in _KEEP_OUTSIDE}
    outside = {k: v for k, v in out.items() if k in _KEEP_OUTSIDE}
    return {**outside, "anyOf": [{**rest, "type": t} for t in types]}


def _convert(schema: dict[str, Any]) -> str:
    """llama.cpp's converter (``json_schema_to_gbnf``), with bounded integers and numbers written as ranges."""
    from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

    class BoundedConverter(SchemaConverter):
        def visit(self, schema: dict[str, Any], name: str) -> str:
            kind = schema.get("type")
            if kind in ("integer", "number") and not (_NOT_PLAIN & schema.keys()):
                lower, upper = numeric.bounds(schema)
                if lower is not None or upper is not None:
                    if kind == "integer":
                        body = numeric.integer_range(*numeric.integer_bounds(lower, upper))
                    else:
                        body = numeric.number_range(lower, upper)
                    rule = name + "-" if name in RESERVED_NAMES else name or "root"
                    return str(self._add_rule(rule, f"({body}) space"))  # type: ignore[no-untyped-call]
            return str(super().visit(schema, name))  # type: ignore[no-untyped-call]

    converter = BoundedConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    resolved = converter.resolve_refs(orjson.loads(orjson.dumps(split_type_lists(schema))), "stdin")
    converter.visit(resolved, "")
    return str(converter.format_grammar())  # type: ignore[no-untyped-call]


def schema_grammar(schema: dict[str, Any]) -> str:
    """The grammar of JSON texts that follow ``schema`` (as far as the converter enforces keywords)."""
    try:
        gbnf = _convert(schema)
    except (AssertionError, ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        # The converter reports what it cannot handle (unanchored patterns, lookaheads...) with asserts.
        raise GrammarUnavailable(f"{type(exc).__name__}: {exc}") from None
    lines = []
    for line in gbnf.splitlines():
        if line.startswith("char ::= "):
            line = STRICT_CHAR
        elif line.startswith("dot ::= "):
            line = STRICT_DOT
        elif line.startswith("date ::= "):
            lines += STRICT_DATE
            continue
        lines.append(line)
    return _checked("\n".join(lines) + "\n")


def json_grammar(root: str = "object") -> str:
    """llama.cpp's grammar of any JSON object (``root="object"``) or any JSON value (``"value"``)."""
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF.replace("root   ::= object", f"root   ::= {root}", 1)


def calls_or_text(calls_gbnf: str) -> str:
    """Either the tool calls ``calls_gbnf`` describes, or free text (tool_choice "auto" without a format)."""
    lines = [
        f"{CALLS_RULE} ::= " + line[len("root ::= ") :] if line.startswith("root ::= ") else line
        for line in calls_gbnf.splitlines()
    ]
    lines += [f"root ::= {CALLS_RULE} | {TEXT_RULE}", FREE_TEXT]
    return _checked("\n".join(lines) + "\n")


def bounded_object_grammar(members: int, chars: int, nested: int, digits: int) -> str:
    """Any JSON object of at most ``members`` members, keys and strings of at most ``chars`` characters, and
    values that are scalars or arrays/objects of at most ``nested`` scalars (numbers of at most ``digits``
    digits each side of the point): JSON-object mode within a token budget (see
    :func:`llmdock.structured.budget.object_caps`)."""
    if members == 0:
        return _checked('root ::= "{" space "}" space\nspace ::= " "?\n')
    rules = [
        f'root ::= "{{" space (member ("," space member){{0,{members - 1}}})? "}}" space',
        'member ::= key ":" space value',
        f'key ::= "\\"" char{{1,{chars}}} "\\"" space',
        f'str ::= "\\"" char{{0,{chars}}} "\\"" space',
        f'num ::= "-"? [0-9]{{1,{digits}}} ("." [0-9]{{1,{digits}}})? space',
        'scalar ::= str | num | ("true" | "false" | "null") space',
        STRICT_CHAR,
        'space ::= " "?',
    ]
    if nested:
        rules += [
            "value ::= scalar | list | dict",
            f'list ::= "[" space (scalar ("," space scalar){{0,{nested - 1}}})? "]" space',
            f'dict ::= "{{" space (key ":" space scalar ("," space key ":" space scalar){{0,{nested - 1}}})? "}}" space',
        ]
    else:
        rules.append("value ::= scalar")
    return _checked("\n".join(rules) + "\n")
