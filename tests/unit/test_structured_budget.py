"""Narrowed grammars for re-asks after a cut-off answer: every answer of the narrowed schema fits the budget
and still follows the client's schema."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import jsonschema
import orjson
import pytest

from llmdock.structured.budget import PATTERN_CHARS, fit_schema, longest, object_caps
from llmdock.structured.grammar import parses, schema_grammar
from llmdock.structured.stage import build_grammar
from tests.unit.test_structured_bounds import gbnf_regex

NESTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "chapters": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": ["string", "null"], "minLength": 2},
                    "pages": {"type": "integer"},
                    "when": {"type": "string", "format": "date"},
                    "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"},
                    "notes": {"type": "array", "items": {"type": "number"}, "maxItems": 40},
                },
                "required": ["name", "pages", "when"],
            },
            "maxItems": 20,
        },
        "status": {"enum": ["draft", "published"]},
    },
    "required": ["title", "tags", "chapters"],
}


def fitted(schema: dict[str, Any], budget: int) -> dict[str, Any]:
    found = fit_schema(schema, budget)
    assert found is not None
    narrowed, fits = found
    assert fits
    return narrowed


def longest_instance(schema: dict[str, Any]) -> Any:
    """The longest value a (narrowed, bounded) schema of this test admits: every bound taken to its maximum."""
    if "enum" in schema:
        return max(schema["enum"], key=lambda v: len(orjson.dumps(v)))
    if "anyOf" in schema:
        return max((longest_instance(s) for s in schema["anyOf"]), key=lambda v: len(orjson.dumps(v)))
    kind = schema["type"]
    if kind == "object":
        return {k: longest_instance(s) for k, s in schema["properties"].items()}
    if kind == "array":
        return [longest_instance(schema["items"])] * schema["maxItems"]
    if kind == "string":
        if schema.get("format") == "date":
            return "2024-01-31"
        if "pattern" in schema:
            return "ABC-123"
        return "x" * schema["maxLength"]
    if kind == "null":
        return None
    return {"integer": -(10**16) + 1, "number": -1.5}[kind]


def spaced(value: Any) -> str:
    """``value`` as JSON with every blank the converter's grammar allows (one after each token)."""
    if isinstance(value, dict):
        kvs = [f"{orjson.dumps(k).decode()} : {spaced(v)}" for k, v in value.items()]
        return "{ " + ", ".join(kvs) + "} "
    if isinstance(value, list):
        return "[ " + ", ".join(spaced(v) for v in value) + "] "
    return orjson.dumps(value).decode() + " "


def test_unbounded_strings_and_arrays_have_no_longest_answer() -> None:
    assert longest(NESTED) == math.inf
    assert longest({"type": "object"}) == math.inf  # any object
    assert longest({"type": "object", "properties": {"a": {"type": "integer"}}}) < 50


@pytest.mark.parametrize("budget", [120, 300, 511, 2000])
def test_a_narrowed_schema_fits_its_budget_and_follows_the_original(budget: int) -> None:
    narrowed = fitted(NESTED, budget)
    assert longest(narrowed) <= budget
    biggest = longest_instance(narrowed)
    jsonschema.validate(biggest, narrowed)
    jsonschema.validate(biggest, NESTED)  # narrowing only lowers upper bounds
    assert len(orjson.dumps(biggest)) <= budget
    assert parses(schema_grammar(narrowed))


def test_the_measure_counts_the_blanks_the_grammar_allows() -> None:
    schema = fitted(NESTED, 511)
    biggest = longest_instance(schema)
    assert len(orjson.dumps(biggest)) < len(spaced(biggest)) <= longest(schema)


def test_minimum_lengths_and_counts_are_kept() -> None:
    narrowed = fitted(NESTED, 120)
    text = orjson.dumps(narrowed).decode()
    assert '"minItems":1' in text
    assert '"minLength":2' in text
    assert narrowed["properties"]["tags"]["maxItems"] >= 1


def test_optional_properties_go_only_when_caps_are_not_enough() -> None:
    roomy = fitted(NESTED, 511)
    tight = fitted(NESTED, 120)
    assert "status" in roomy["properties"]
    assert "status" not in tight["properties"]


def test_a_schema_that_already_fits_is_kept_and_one_that_cannot_fit_gets_its_tightest_form() -> None:
    small = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    assert fit_schema(small, 100) == (small, True)
    assert fit_schema({"type": "object"}, 500) is None  # no declared properties: nothing to cap
    many = {"type": "array", "items": {"type": "string"}, "minItems": 50}
    found = fit_schema(many, 100)
    assert found is not None
    tightest, fits = found
    assert not fits
    assert tightest["maxItems"] == 50
    assert tightest["items"]["maxLength"] == 1


def test_patterns_count_as_their_longest_match() -> None:
    fixed = {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}
    assert longest(fixed) == len('"ABC-123"') + 1
    assert longest({"type": "string", "pattern": "^[a-z]+$"}) == 2 + PATTERN_CHARS + 1


def test_generated_schemas_all_fit_a_budget() -> None:
    rng = random.Random(3)

    def gen(depth: int) -> dict[str, Any]:
        roll = rng.random()
        if depth < 3 and roll < 0.3:
            props = {f"p{i}": gen(depth + 1) for i in range(rng.randint(1, 5))}
            return {"type": "object", "properties": props, "required": list(props)[: rng.randint(0, 2)]}
        if depth < 3 and roll < 0.5:
            return {"type": "array", "items": gen(depth + 1)}
        return rng.choice(
            [{"type": "string"}, {"type": "integer"}, {"enum": ["a", "bb"]}, {"type": "boolean"}]
        )

    for _ in range(100):
        schema = gen(0)
        narrowed = fitted(schema, 400)
        assert longest(narrowed) <= 400


def test_a_budget_grammar_is_built_only_where_it_can_bound_the_answer() -> None:
    key = orjson.dumps(
        {"content": "json_schema", "schema": NESTED, "tools": {}, "required": False, "parallel": False}
    ).decode()
    gbnf, kind = build_grammar(key, 300)
    assert kind == "schema+budget"
    assert build_grammar(key, 40)[1] == "schema+tightest"  # tags need at least one item
    assert parses(gbnf)
    assert build_grammar(key)[1] == "schema"
    as_object = orjson.loads(key) | {"content": "json_object", "schema": None}
    assert build_grammar(orjson.dumps(as_object).decode(), 300)[1] == "json+budget"  # caps on any object
    assert build_grammar(orjson.dumps(as_object).decode())[1] == "json"
    tools = {"search": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}
    required = orjson.loads(key) | {"content": "text", "schema": None, "tools": tools, "required": True}
    assert build_grammar(orjson.dumps(required).decode(), 300)[1] == "tools+budget"
    auto = required | {"required": False}  # free text has no length to bound
    assert build_grammar(orjson.dumps(auto).decode(), 300)[1] == "tools+text"


def _longest_object(members: int, chars: int, nested: int, digits: int) -> str:
    """The longest text of the bounded object grammar: every cap reached, every optional blank written."""
    string = '"' + "s" * chars + '" '
    number = "-" + "9" * digits + "." + "9" * digits + " "
    scalar = max(string, number, "false ", key=len)
    key = '"' + "k" * chars + '" '
    entries = [scalar, f"{key}: {scalar}"]
    inner = max(
        ("[ " + ", ".join([scalar] * nested) + "] ", "{ " + ", ".join([entries[1]] * nested) + "} "), key=len
    )
    value = max(scalar, inner, key=len) if nested else scalar
    return "{ " + ", ".join([f"{key}: {value}"] * members) + "} "


@pytest.mark.parametrize("budget", [10, 30, 60, 127, 255, 1023, 4095])
def test_json_object_mode_under_a_budget_admits_only_objects_that_fit(budget: int) -> None:
    key = orjson.dumps({"content": "json_object", "schema": {"type": "object"}, "tools": {}}).decode()
    gbnf, kind = build_grammar(key, budget)
    assert kind == "json+budget"
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)
    pattern = re.compile(gbnf_regex(rules, "root"))
    members, chars, nested, digits = object_caps(budget)
    text = _longest_object(members, chars, nested, digits)
    assert pattern.fullmatch(text)
    assert len(text) <= budget
    assert isinstance(orjson.loads(text), dict)
    if members:  # one member more, or one character more, is not in the grammar
        assert not pattern.fullmatch(_longest_object(members + 1, chars, nested, digits))
        assert not pattern.fullmatch(_longest_object(members, chars + 1, nested, digits))
    assert pattern.fullmatch("{}")
