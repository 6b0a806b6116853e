"""Format checks (score 1 or 0): the output is JSON (``is-json``), and conforms to a JSON schema
(``json-schema``; promptfoo spells it ``is-json`` with the schema as ``value``, which works here too)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from llmdock.evaluate.case import BaseMetric, Case, Check, MetricError, Output, Score

if TYPE_CHECKING:
    from llmdock.pipeline.env import StageEnv


def _schema(check: Check) -> dict[str, Any] | None:
    """The check's ``value`` as a JSON schema (a mapping, or JSON text of one), checked against its
    meta-schema; ``None`` when the check gives none."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    value: Any = check.value
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise MetricError(f"{check.label}: `value` is not a JSON schema: {exc}") from exc
    if not isinstance(value, dict):
        raise MetricError(f"{check.label}: `value` must be a JSON schema (an object)")
    try:
        validator_for(value).check_schema(value)
    except SchemaError as exc:
        raise MetricError(f"{check.label}: bad JSON schema: {exc.message}") from exc
    return value


class IsJsonMetric(BaseMetric):
    name = "is-json"
    description = (
        "1 when the whole output (surrounding whitespace aside) parses as JSON and, when `value` gives "
        "a JSON schema, conforms to it; else 0. Passes at 1."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        super().__init__(check, env)
        from jsonschema.validators import validator_for  # imported by the checks that use it

        schema = _schema(check)
        self.validator = None if schema is None else validator_for(schema)(schema)

    async def score(self, case: Case, output: Output) -> Score:
        try:
            document = json.loads(output.text)
        except ValueError as exc:
            return Score(0.0, self.passes(0.0), f"not JSON: {exc}")
        if self.validator is not None:
            from jsonschema.exceptions import best_match

            error = best_match(self.validator.iter_errors(document))
            if error is not None:
                where = "/".join(str(part) for part in error.absolute_path) or "(root)"
                return Score(0.0, self.passes(0.0), f"schema: {where}: {error.message}")
        return Score(1.0, self.passes(1.0))


class JsonSchemaMetric(IsJsonMetric):
    name = "json-schema"
    description = (
        "1 when the output parses as JSON and conforms to the JSON schema in `value` (required); else 0. "
        "Passes at 1."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        if check.value is None:
            raise MetricError(f"{check.label}: needs the JSON schema as `value`")
        super().__init__(check, env)


FORMAT_METRICS = (IsJsonMetric, JsonSchemaMetric)
