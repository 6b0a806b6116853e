"""Bounds by construction: the grammar of a bounded integer or number admits exactly the values in range.

Each grammar is parsed by llama.cpp, then read as a regular expression (its rules here are regular) and
checked against every value of a window around the bounds, and against what ``jsonschema`` says of it.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from llmdock.structured.grammar import GrammarUnavailable, parses, schema_grammar
from llmdock.structured.schemas import SchemaValidator, unenforced_keywords
from llmdock.structured.stage import build_grammar, compile_schema

_TOKEN = re.compile(
    r'"((?:[^"\\]|\\.)*)"|(\[[^\]]*\])|([()|])|([a-z][a-z0-9-]*)|(\{\d+(?:,\d*)?\}|[?*+])|\s+'
)


def gbnf_regex(rules: dict[str, str], name: str) -> str:
    """A regex for a GBNF rule made of literals, classes, groups, quantifiers, ``|`` and names of such rules."""
    out = []
    for lit, cls, op, ref, quantifier in _TOKEN.findall(rules[name]):
        if lit:
            out.append(f"(?:{re.escape(lit.encode().decode('unicode_escape'))})")
        elif cls:
            out.append(cls)
        elif op:
            out.append("(?:" if op == "(" else op)
        elif ref:
            out.append(f"(?:{gbnf_regex(rules, ref)})")
        elif quantifier:
            out.append(quantifier)
    return "".join(out)


def admits(schema: dict[str, Any]) -> re.Pattern[str]:
    gbnf = schema_grammar(schema)
    assert parses(gbnf)
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)
    return re.compile(gbnf_regex(rules, "root"))


INTEGER_SCHEMAS = [
    {"minimum": 0, "maximum": 1000},
    {"maximum": 1000, "exclusiveMaximum": 1000},  # LangChain's test_tool_choice: "input" below 1000
    {"minimum": -40, "maximum": 125},
    {"exclusiveMinimum": -7, "exclusiveMaximum": 93},
    {"minimum": -1200, "maximum": -15},
    {"minimum": 1.5, "maximum": 20.5},  # fractional bounds of an integer
    {"minimum": 17},
    {"maximum": -3},
    {"minimum": 0, "maximum": 0},
    {"$schema": "http://json-schema.org/draft-04/schema#", "minimum": 5, "exclusiveMinimum": True},
]


@pytest.mark.parametrize("bounds", INTEGER_SCHEMAS)
def test_a_bounded_integer_grammar_admits_exactly_the_integers_in_range(bounds: dict[str, Any]) -> None:
    schema = {"type": "integer", **bounds}
    pattern = admits(schema)
    validator = SchemaValidator(schema)
    for value in range(-1500, 1500):
        text = str(value)
        assert bool(pattern.fullmatch(text)) is (validator.error(value) is None), text
    assert not pattern.fullmatch("007")  # JSON integers only
    assert not pattern.fullmatch("1.0")


def test_unbounded_sides_keep_the_converters_sixteen_digits() -> None:
    pattern = admits({"type": "integer", "minimum": 10})
    assert pattern.fullmatch("9" * 16)
    assert not pattern.fullmatch("1" + "0" * 16)
    assert not pattern.fullmatch("-5")


NUMBER_SCHEMAS = [
    {"minimum": 0, "maximum": 1},
    {"exclusiveMinimum": 0, "maximum": 100},
    {"minimum": -5, "exclusiveMaximum": 5},
    {"exclusiveMinimum": -3, "exclusiveMaximum": 0},
    {"minimum": -10, "maximum": -2},
    {"minimum": 0},
]


def _decimals() -> list[str]:
    whole = [str(i) for i in range(-12, 120)]
    tenths = [f"{i / 10:.1f}" for i in range(-120, 1200)]
    return [*whole, *tenths, "-0", "-0.0", "0.05", "-0.05", "99.99", "100.00", "100.01", "4.999"]


@pytest.mark.parametrize("bounds", NUMBER_SCHEMAS)
def test_a_number_grammar_with_integer_bounds_admits_exactly_the_numbers_in_range(
    bounds: dict[str, Any],
) -> None:
    schema = {"type": "number", **bounds}
    pattern = admits(schema)
    validator = SchemaValidator(schema)
    for text in _decimals():
        value = Decimal(text)
        in_range = validator.error(float(value)) is None
        if pattern.fullmatch(text):
            assert in_range, text
        elif in_range:  # written another way: zero without its sign, a fraction without trailing zeros
            assert pattern.fullmatch(_plain(text)), text


def _plain(text: str) -> str:
    plain = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if plain == "-0" else plain


def test_a_number_with_fractional_bounds_is_kept_to_the_integers_around_them() -> None:
    pattern = admits({"type": "number", "minimum": 0.5, "maximum": 2.5})
    for text in ("0.2", "2.9"):  # between the integers and the bounds: validation's part
        assert pattern.fullmatch(text)
    for text in ("3.1", "-0.1", "1e3"):
        assert not pattern.fullmatch(text)
    assert unenforced_keywords({"type": "number", "minimum": 0.5}) == ["minimum"]
    assert unenforced_keywords({"type": "number", "minimum": 0, "exclusiveMaximum": 1}) == []


def test_bounds_inside_objects_arrays_and_type_lists_are_enforced() -> None:
    schema = {
        "type": "object",
        "properties": {
            "ages": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 130}},
            "score": {"type": ["integer", "null"], "maximum": 9},
        },
        "required": ["ages", "score"],
        "additionalProperties": False,
    }
    pattern = admits(schema)
    assert pattern.fullmatch('{"ages":[0,130,42],"score":9}')
    assert pattern.fullmatch('{"ages":[],"score":null}')
    assert not pattern.fullmatch('{"ages":[131],"score":9}')
    assert not pattern.fullmatch('{"ages":[1],"score":10}')


def test_a_range_with_no_integer_in_it_falls_back_to_any_json() -> None:
    with pytest.raises(GrammarUnavailable):
        schema_grammar({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2})
    key = '{"content":"json_schema","schema":{"type":"integer","minimum":3,"maximum":2},"tools":{}}'
    _, kind = build_grammar(key)
    assert kind == "schema-fallback"


def test_a_tool_argument_below_an_exclusive_maximum_cannot_reach_it() -> None:
    """LangChain's test_tool_choice: the 1000 the model wrote three times is no longer in the grammar."""
    params = {
        "type": "object",
        "properties": {"input": {"type": "integer", "exclusiveMaximum": 1000}},
        "required": ["input"],
    }
    compiled = compile_schema(str(params).replace("'", '"'), "tools.0.function.parameters")
    assert compiled.unenforced == []
    key = (
        '{"content":"text","schema":null,"tools":{"magic_function":'
        + str(params).replace("'", '"')
        + '},"required":true,"parallel":false}'
    )
    gbnf, kind = build_grammar(key)
    assert kind == "tools"
    assert parses(gbnf)
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)
    pattern = re.compile(gbnf_regex(rules, "root"))
    assert pattern.fullmatch('[{"name":"magic_function","arguments":{"input":999}}]')
    assert not pattern.fullmatch('[{"name":"magic_function","arguments":{"input":1000}}]')
