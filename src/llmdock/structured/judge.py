"""Judging one answer against its plan: parse it, validate it, and if needed repair it.

An answer is tool calls (llmdock's canonical JSON list, see :mod:`llmdock.structured.plan`) or content
(JSON following the response format, or free text when only tools constrain it). Parsing is strict
(``orjson``: no NaN, no raw control characters in strings); validation is ``jsonschema``'s. Repair is the
``json-repair`` library, guided by the schema (it also coerces ``"30"`` to ``30`` where the schema wants an
integer); a repaired answer is validated again like any other. An answer cut off at ``max_tokens`` is never
repaired: closing its brackets would pass truncated data off as complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from json_repair import repair_json

from llmdock.structured.plan import StructuredPlan

Call = tuple[str, Any]


@dataclass(slots=True)
class Verdict:
    ok: bool
    text: str = ""  # the answer to return: the content, or the calls in canonical form
    calls: list[Call] | None = None
    error: str = ""
    repaired: bool = False


def _opens_calls(text: str) -> bool:
    """Does the answer start the canonical list of calls (``[`` then ``{`` or nothing yet)?"""
    if not text.startswith("["):
        return False
    rest = text[1:].lstrip()
    return not rest or rest.startswith("{")


def _load(text: str, repair: bool, schema: Any = None) -> tuple[Any, str | None]:
    if not repair:
        try:
            return orjson.loads(text), None
        except orjson.JSONDecodeError as exc:
            return None, f"$: not valid JSON ({exc})"
    try:
        value = repair_json(text, return_objects=True, schema=schema)
    except Exception as exc:  # repair is best effort: whatever the library raises, the answer stays invalid
        return None, f"$: not valid JSON, and not repairable ({type(exc).__name__})"
    if value == "" and text.strip() not in ('""', "''"):
        return None, "$: not valid JSON, and not repairable"
    return value, None


def _calls(plan: StructuredPlan, value: Any, repair: bool) -> tuple[list[Call] | None, str | None]:
    if isinstance(value, dict):  # one call without its list
        value = [value]
    if not isinstance(value, list) or not value:
        return None, '$: expected a JSON list of tool calls [{"name": ..., "arguments": {...}}]'
    if len(value) > 1 and plan.parallel is False:
        return None, f"$: {len(value)} tool calls, but parallel_tool_calls is false"
    calls: list[Call] = []
    for i, call in enumerate(value):
        if not isinstance(call, dict) or "name" not in call or set(call) - {"name", "arguments"}:
            return None, f'$[{i}]: expected {{"name": ..., "arguments": {{...}}}}'
        tool = plan.tools.get(call["name"]) if isinstance(call["name"], str) else None
        if tool is None:
            return None, f"$[{i}].name: {call['name']!r} is not one of the tools ({', '.join(plan.tools)})"
        args = call.get("arguments", {})
        if isinstance(args, str) and not args.strip():  # some servers send "" for a call without arguments
            args = {}
        if isinstance(args, str):  # an upstream's arguments that were not JSON
            args, error = _load(args, repair, tool.compiled.schema)
            if error is not None:
                return None, f"$[{i}].arguments{error[1:]}"
        elif repair:
            args, error = _load(orjson.dumps(args).decode(), True, tool.compiled.schema)
            if error is not None:
                return None, f"$[{i}].arguments{error[1:]}"
        error = tool.compiled.validator.error(args, at=f"$[{i}].arguments")
        if error is not None:
            return None, error
        calls.append((tool.name, args))
    return calls, None


def canonical(calls: list[Call]) -> str:
    return orjson.dumps([{"name": name, "arguments": args} for name, args in calls]).decode()


def _judge(plan: StructuredPlan, text: str, repair: bool) -> Verdict:
    stripped = text.strip()
    calls_error = ""
    if plan.calls_allowed and (plan.calls_required or _opens_calls(stripped)):
        value, error = _load(stripped, repair)
        calls = None
        if error is None:
            calls, error = _calls(plan, value, repair)
        if calls is not None:
            return Verdict(True, canonical(calls), calls)
        if plan.calls_required or plan.content == "text":
            return Verdict(False, error=error or "")
        calls_error = error or ""
    if plan.content == "text":
        return Verdict(True, text)
    assert plan.content_schema is not None
    compiled = plan.content_schema
    value, error = _load(stripped, repair, compiled.schema)
    if error is None:
        error = compiled.validator.error(value)
    if error is not None:
        also = f" (nor a valid tool call: {calls_error})" if calls_error else ""
        return Verdict(False, error=error + also)
    return Verdict(True, orjson.dumps(value).decode() if repair else stripped)


def judge(plan: StructuredPlan, text: str, *, truncated: bool) -> Verdict:
    """Whether ``text`` follows the plan, repairing it if it does not (unless it was cut off)."""
    verdict = _judge(plan, text, repair=False)
    if verdict.ok:
        return verdict
    if truncated:
        verdict.error = f"the answer was cut off at max_tokens before it was complete ({verdict.error})"
        return verdict
    repaired = _judge(plan, text, repair=True)
    if repaired.ok:
        repaired.repaired = True
        return repaired
    return verdict


def openai_tool_calls(calls: list[Call], id_prefix: str) -> list[dict[str, Any]]:
    """The calls as OpenAI returns them; ids are made from the trace id, so stream and trace agree."""
    return [
        {
            "id": f"call_{id_prefix}{i}",
            "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(args).decode()},
        }
        for i, (name, args) in enumerate(calls)
    ]
