"""Structured output without a model: schemas to grammars, checking schemas, judging and repairing answers."""

from __future__ import annotations

import datetime
import re
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from llmdock.backends.base import tool_calls_text
from llmdock.errors import InvalidRequest
from llmdock.structured.grammar import STRICT_CHAR, parses, schema_grammar
from llmdock.structured.judge import judge
from llmdock.structured.plan import StructuredPlan, ToolSpec, grammar_key
from llmdock.structured.schemas import check_schema, nest_schema, unenforced_keywords
from llmdock.structured.stage import build_grammar, compile_schema, live
from tests.unit.test_structured_bounds import gbnf_regex

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "role": {"enum": ["admin", "user"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["city"],
        },
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TIME = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}


def compiled(schema: dict[str, Any], param: str = "schema") -> Any:
    return compile_schema(orjson.dumps(schema).decode(), param)


def schema_plan(schema: dict[str, Any]) -> StructuredPlan:
    return StructuredPlan(content="json_schema", content_schema=compiled(schema), schema_name="person")


def tools_plan(choice: str = "required", content: str = "text", **extra: Any) -> StructuredPlan:
    tools = {
        "get_weather": ToolSpec("get_weather", "weather now", compiled(WEATHER)),
        "get_time": ToolSpec("get_time", "", compiled(TIME)),
    }
    return StructuredPlan(content=content, tools=tools, tool_choice=choice, **extra)  # type: ignore[arg-type]


# --- schema -> grammar ---------------------------------------------------------------------------------


def test_a_nested_schema_becomes_a_grammar_llama_cpp_parses() -> None:
    gbnf = schema_grammar(PERSON)
    assert parses(gbnf)
    assert '"\\"admin\\""' in gbnf  # enums become literal alternatives
    # strings may not hold raw control characters: the converter's char rule is narrowed to valid JSON
    assert STRICT_CHAR in gbnf.splitlines()


def test_properties_are_written_in_the_order_the_schema_declares_them() -> None:
    schema = {"type": "object", "properties": {"zeta": {"type": "integer"}, "alpha": {"type": "integer"}}}
    gbnf, _ = build_grammar(grammar_key(schema_plan({**schema, "required": ["zeta", "alpha"]})))
    root = next(line for line in gbnf.splitlines() if line.startswith("root ::= "))
    assert root.index("zeta-kv") < root.index("alpha-kv")


def test_an_unparsable_grammar_is_refused_before_it_reaches_llama_cpp() -> None:
    assert not parses("root ::= undefined-rule")


def test_a_schema_the_converter_cannot_express_falls_back_to_any_json() -> None:
    plan = schema_plan({"type": "string", "pattern": "[a-z]+"})  # unanchored: the converter refuses it
    gbnf, kind = build_grammar(grammar_key(plan))
    assert kind == "schema-fallback"
    assert parses(gbnf)
    assert "pattern (unanchored)" in plan.unenforced()


@pytest.mark.parametrize(
    ("choice", "content", "kind"),
    [
        ("required", "text", "tools"),
        ("auto", "text", "tools+text"),
        ("auto", "json_schema", "tools+schema"),
        ("auto", "json_object", "tools+json"),
    ],
)
def test_tool_grammars_for_each_choice_parse(choice: str, content: str, kind: str) -> None:
    content_schema = compiled(PERSON if content == "json_schema" else {"type": "object"})
    plan = tools_plan(choice, content, content_schema=None if content == "text" else content_schema)
    gbnf, got = build_grammar(grammar_key(plan))
    assert got == kind
    assert parses(gbnf)
    assert '"\\"get_weather\\""' in gbnf
    assert '"\\"get_time\\""' in gbnf


def test_refs_inside_tool_parameters_are_moved_with_them() -> None:
    params = {"$defs": {"Zone": {"enum": ["UTC"]}}, "properties": {"z": {"$ref": "#/$defs/Zone"}}}
    assert nest_schema(params, "tool-0")["properties"]["z"]["$ref"] == "#/$defs/tool-0/$defs/Zone"
    plan = tools_plan()
    plan.tools["get_time"].compiled = compiled({"type": "object", **params})
    gbnf, _ = build_grammar(grammar_key(plan))
    assert parses(gbnf)


def test_keywords_only_validation_enforces_are_listed() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1, "multipleOf": 5}, "e": {"format": "email"}},
    }
    assert unenforced_keywords(schema) == ["format:email", "multipleOf"]
    assert unenforced_keywords(PERSON) == []


# --- checking schemas: a bad one is a 400 naming the field ----------------------------------------------


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        ({"type": "object", "properties": {"age": {"type": "strin"}}}, "f.properties.age.type"),
        ({"type": "object", "required": "name"}, "f.required"),
        ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, "f.properties.a.$ref"),
        ({"properties": {"a": {"$ref": "#/$defs/Missing"}}}, "f.properties.a.$ref"),
        ([1, 2], "f"),
    ],
)
def test_a_bad_schema_is_refused_naming_the_field(schema: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        check_schema(schema, "f")
    assert info.value.param == field
    assert info.value.message.startswith(field + ": ")


# --- judging answers -----------------------------------------------------------------------------------

GOOD = '{"name": "Ada", "age": 36, "role": "admin", "address": {"city": "London"}}'


def test_a_valid_answer_is_kept_as_written() -> None:
    verdict = judge(schema_plan(PERSON), " " + GOOD + " ", truncated=False)
    assert verdict.ok
    assert not verdict.repaired
    assert verdict.text == GOOD


def test_an_answer_breaking_the_schema_names_the_json_path() -> None:
    verdict = judge(schema_plan(PERSON), GOOD.replace('"admin"', '"root"'), truncated=False)
    assert not verdict.ok
    assert verdict.error.startswith("$.role: 'root' is not one of")


@pytest.mark.parametrize(
    "broken",
    [
        "```json\n" + GOOD + "\n```",  # a code fence
        "Sure! Here it is: " + GOOD,  # prose before the JSON
        GOOD[:-1] + ",}",  # a trailing comma
        GOOD.replace("36", '"36"'),  # a number as a string, coerced by the schema
    ],
)
def test_repairable_answers_are_repaired_and_then_valid(broken: str) -> None:
    verdict = judge(schema_plan(PERSON), broken, truncated=False)
    assert verdict.ok
    assert verdict.repaired
    assert orjson.loads(verdict.text) == orjson.loads(GOOD)


def test_an_answer_cut_off_at_max_tokens_is_never_repaired() -> None:
    verdict = judge(schema_plan(PERSON), GOOD[:40], truncated=True)
    assert not verdict.ok
    assert "cut off at max_tokens" in verdict.error
    # ... but one that was complete when the limit hit is fine
    assert judge(schema_plan(PERSON), GOOD, truncated=True).ok


def test_raw_control_characters_in_strings_are_invalid_json() -> None:
    plan = StructuredPlan(content="json_object", content_schema=compiled({"type": "object"}))
    assert not judge(plan, '{"a": "line\nbreak"}', truncated=True).ok


def test_tool_calls_are_parsed_and_their_arguments_validated() -> None:
    verdict = judge(
        tools_plan(), '[{"name": "get_weather", "arguments": {"city": "Paris"}}]', truncated=False
    )
    assert verdict.ok
    assert verdict.calls == [("get_weather", {"city": "Paris"})]
    bad_args = judge(tools_plan(), '[{"name": "get_time", "arguments": {"zone": "PST"}}]', truncated=False)
    assert bad_args.error.startswith("$[0].arguments.zone: 'PST' is not one of")
    unknown = judge(tools_plan(), '[{"name": "launch", "arguments": {}}]', truncated=False)
    assert unknown.error == "$[0].name: 'launch' is not one of the tools (get_weather, get_time)"


def test_upstream_arguments_that_are_not_json_are_repaired() -> None:
    calls = [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{'city': 'Rome'"}}
    ]
    verdict = judge(tools_plan(), tool_calls_text(calls), truncated=False)
    assert verdict.ok
    assert verdict.repaired
    assert verdict.calls == [("get_weather", {"city": "Rome"})]


def test_empty_arguments_from_an_upstream_mean_no_arguments() -> None:
    plan = tools_plan()
    plan.tools["get_time"].compiled = compiled({"type": "object", "properties": {}})
    calls = [{"id": "c", "type": "function", "function": {"name": "get_time", "arguments": ""}}]
    assert judge(plan, tool_calls_text(calls), truncated=False).calls == [("get_time", {})]


def test_several_calls_need_parallel_tool_calls() -> None:
    two = '[{"name": "get_time", "arguments": {"zone": "UTC"}}, {"name": "get_weather", "arguments": {"city": "Oslo"}}]'
    assert judge(tools_plan(parallel=None), two, truncated=False).ok
    assert "parallel_tool_calls is false" in judge(tools_plan(parallel=False), two, truncated=False).error


def test_auto_tells_a_text_answer_from_a_call() -> None:
    plan = tools_plan("auto")
    text = judge(plan, "It is sunny in Paris.", truncated=False)
    assert text.ok
    assert text.calls is None
    assert text.text == "It is sunny in Paris."
    assert judge(plan, "[1] is a footnote", truncated=False).calls is None
    call = judge(plan, '[{"name": "get_time", "arguments": {"zone": "CET"}}]', truncated=False)
    assert call.calls == [("get_time", {"zone": "CET"})]
    assert not judge(plan, '[{"name": "get_ti', truncated=True).ok


def test_auto_with_a_schema_takes_a_call_or_a_valid_answer() -> None:
    plan = tools_plan("auto", "json_schema", content_schema=compiled(PERSON))
    assert judge(plan, GOOD, truncated=False).calls is None
    assert judge(plan, '[{"name": "get_time", "arguments": {"zone": "UTC"}}]', truncated=False).calls
    neither = judge(plan, '{"name": 3}', truncated=False)
    assert not neither.ok


def test_a_type_list_keeps_its_other_keywords_in_the_grammar() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": ["string", "null"], "maxLength": 3}},
        "required": ["n"],
    }
    gbnf = schema_grammar(schema)
    # the string branch is bounded: at most 3 chars (the converter alone would allow any string)
    assert "(char (char (char)?)?)?" in gbnf
    assert '"null"' in gbnf


class _GrammarBackend:
    enforces_grammar = True


class _PromptOnlyBackend:
    enforces_grammar = False


@pytest.mark.parametrize(
    ("backend", "grammar", "tools", "expected"),
    [
        (_GrammarBackend(), "schema", False, True),
        (_GrammarBackend(), "json", False, True),
        (_GrammarBackend(), "json+budget", False, True),  # a json_object stream bounded to max_tokens
        (_GrammarBackend(), "schema+budget", False, True),  # a json_schema stream bounded to max_tokens
        (_GrammarBackend(), "schema-fallback", False, False),  # any JSON: the shape is checked at the end
        (_GrammarBackend(), "tools+schema", True, False),  # tool-call deltas are made from the judged calls
        (_PromptOnlyBackend(), "schema", False, False),
    ],
)
def test_only_streams_whose_grammar_is_enforced_go_out_live(
    backend: Any, grammar: str, tools: bool, expected: bool
) -> None:
    plan = StructuredPlan(content="json_schema", grammar=grammar)
    if tools:
        plan.tools = {"f": ToolSpec("f", "", compile_schema('{"type": "object"}', "tools.0"))}
        plan.tool_choice = "auto"
    assert live(SimpleNamespace(backend=backend), plan) is expected  # type: ignore[arg-type]


def test_the_date_grammar_admits_exactly_the_calendar_dates() -> None:
    gbnf = schema_grammar({"type": "string", "format": "date"})
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)
    pattern = re.compile(gbnf_regex(rules, "date"))
    for year in ("0000", "0001", "0004", "0100", "0400", "1900", "2000", "2023", "2024", "9999"):
        for month in range(14):
            for day in range(33):
                text = f"{year}-{month:02d}-{day:02d}"
                try:
                    real = datetime.date.fromisoformat(text) is not None
                except ValueError:
                    real = False
                assert bool(pattern.fullmatch(text)) is real, text
