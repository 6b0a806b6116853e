"""JSON Schema handling: is a client's schema valid, what the grammar cannot enforce, and validating answers.

The ``jsonschema`` library does the checking (each schema under the draft its ``$schema`` names, 2020-12 when
it names none). A bad schema is the client's error and answers 400 naming the request field and the place
inside the schema; an answer that breaks its schema is described by JSON path (``$.items[2].price``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, SchemaError, validators
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator

from llmdock.errors import InvalidRequest
from llmdock.structured.numeric import BOUND_KEYWORDS, exact_for

# Keywords the validator checks but the grammar (llama.cpp's schema-to-grammar converter, with bounds added by
# llmdock.structured.numeric) does not enforce. An answer from a grammar-constrained model can still break
# these; validation catches it and re-asks. docs/structured.md has the table.
VALIDATION_ONLY = frozenset(
    {
        "multipleOf",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "contains",
        "minContains",
        "maxContains",
        "unevaluatedProperties",
        "unevaluatedItems",
        "oneOf",  # converted as anyOf: the grammar does not forbid matching several
        "allOf",  # merged from the branches' properties only
    }
)
# String formats the converter has grammar rules for; other formats are checked only by validation.
GRAMMAR_FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
)


def _subschemas(schema: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """(relative path, subschema) of every schema nested directly in ``schema``."""
    for key in _SUBSCHEMA_MAPS:
        value = schema.get(key)
        if isinstance(value, dict):
            for name, sub in value.items():
                yield (key, name), sub
    for key in _SUBSCHEMA_LISTS:
        value = schema.get(key)
        if isinstance(value, list):
            for i, sub in enumerate(value):
                yield (key, i), sub
    for key in _SUBSCHEMAS:
        value = schema.get(key)
        if isinstance(value, dict):
            yield (key,), value
        elif isinstance(value, list):  # draft-04..07 tuple form of items
            for i, sub in enumerate(value):
                yield (key, i), sub


def _walk(
    schema: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    if not isinstance(schema, dict):
        return
    yield path, schema
    for rel, sub in _subschemas(schema):
        yield from _walk(sub, path + rel)


def _field(param: str, path: tuple[str | int, ...] | list[str | int]) -> str:
    return ".".join([param, *(str(p) for p in path)])


def _resolve_pointer(schema: dict[str, Any], ref: str) -> bool:
    """Whether a local reference (``#`` or ``#/a/b``) points at something inside ``schema``."""
    node: Any = schema
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def check_schema(schema: Any, param: str) -> None:
    """Raise InvalidRequest (400) naming ``param`` and the place inside the schema if it is not usable."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{param}: a JSON Schema must be an object", param=param)
    cls = validators.validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = _field(param, list(exc.path))
        raise InvalidRequest(f"{where}: {exc.message}", param=where) from None
    for path, sub in _walk(schema):
        ref = sub.get("$ref")
        if ref is None:
            continue
        where = _field(param, [*path, "$ref"])
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise InvalidRequest(
                f"{where}: only references inside the schema (#/...) are supported, not {ref!r}", param=where
            )
        if not _resolve_pointer(schema, ref):
            raise InvalidRequest(f"{where}: {ref!r} points at nothing in the schema", param=where)


def _unenforced_bounds(schema: dict[str, Any]) -> list[str]:
    """Bounds the grammar does not make exact: on a schema without a type (it may be any number), or
    fractional bounds of a ``number`` (rounded outward to integers in the grammar)."""
    present = [k for k in BOUND_KEYWORDS if k in schema]
    if not present or {"enum", "const"} & schema.keys():
        return []
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if kind is None or ("number" in kinds and not exact_for({**schema, "type": "number"})):
        return [k for k in present if not isinstance(schema[k], bool)]
    return []


def unenforced_keywords(schema: dict[str, Any]) -> list[str]:
    """Keywords (and string formats) in ``schema`` that only validation, not the grammar, can enforce."""
    found: set[str] = set()
    for _, sub in _walk(schema):
        found.update(k for k in sub if k in VALIDATION_ONLY)
        found.update(_unenforced_bounds(sub))
        fmt = sub.get("format")
        if isinstance(fmt, str) and fmt not in GRAMMAR_FORMATS:
            found.add(f"format:{fmt}")
        pattern = sub.get("pattern")
        if isinstance(pattern, str) and not (pattern.startswith("^") and pattern.endswith("$")):
            found.add("pattern (unanchored)")
    return sorted(found)


def nest_schema(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """A copy of ``schema`` whose local ``$ref`` point where it will live: under ``#/$defs/<key>``.

    Used to place several client schemas (tool parameters, a response format) into one combined schema.
    """
    nested = copy.deepcopy(schema)
    prefix = f"#/$defs/{key}"
    for _, sub in _walk(nested):
        ref = sub.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            sub["$ref"] = prefix + ref[1:]
    return nested


class SchemaValidator:
    """Validates answers against one schema; formats are checked where jsonschema has a checker for them."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        cls = validators.validator_for(schema, default=Draft202012Validator)
        checker: FormatChecker = cls.FORMAT_CHECKER
        self._validator: Validator = cls(schema, format_checker=checker)

    def error(self, instance: Any, at: str = "$") -> str | None:
        """None if ``instance`` is valid, else the most relevant error as ``$.json.path: message``."""
        err = best_match(self._validator.iter_errors(instance))
        if err is None:
            return None
        path = at + err.json_path[1:]
        message = err.message if len(err.message) <= 300 else err.message[:297] + "..."
        return f"{path}: {message}"
