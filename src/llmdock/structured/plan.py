"""What a request asks of its answer (``response_format``, ``tools``, ``tool_choice``), and how it is asked.

:func:`build_plan` checks the request's schemas and tools (a bad one is a 400 naming the field), then prepares
the request for the backends that will serve it:

* backends that implement the OpenAI fields themselves (``native_structured_output``, i.e. openai_compat)
  get them passed through unchanged in ``req.extra``;
* the others (the embedded llama.cpp model) get the schema and the tools written into the system message, a
  GBNF grammar in ``req.grammar`` that only admits a valid answer, and earlier tool calls in the
  conversation rewritten as text (chat templates need not know about tools).

Tool calls in llmdock's canonical form are a JSON list ``[{"name": ..., "arguments": {...}}]`` (see
:func:`llmdock.backends.base.tool_calls_text`); the grammar for the embedded model produces exactly that.
With ``tool_choice: "auto"`` the grammar lets the model either open that list or write an answer, which
then may not start with ``[``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import orjson

from llmdock.backends.base import Backend, SamplingParams, tool_calls_text
from llmdock.errors import InvalidRequest
from llmdock.structured.schemas import SchemaValidator

if TYPE_CHECKING:
    from llmdock.pipeline.context import RequestContext

ContentMode = Literal["text", "json_object", "json_schema"]
ToolChoice = Literal["none", "auto", "required", "function"]
JSON_OBJECT: dict[str, Any] = {"type": "object"}
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(slots=True)
class CompiledSchema:
    """A checked schema with its validator (made once per distinct schema and cached by the stage)."""

    schema: dict[str, Any]
    validator: SchemaValidator
    unenforced: list[str]


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str
    compiled: CompiledSchema


@dataclass(slots=True)
class StructuredPlan:
    """The shape an answer must have, and (once the structured stage ran) what it took to get one."""

    content: ContentMode = "text"
    content_schema: CompiledSchema | None = None
    schema_name: str = ""
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    tool_choice: ToolChoice = "none"
    forced: str | None = None  # the function named by tool_choice
    parallel: bool | None = None  # parallel_tool_calls as sent (None: not said)
    native: bool = False  # every backend of the route takes the OpenAI fields as they are
    grammar: str = ""  # which grammar constrains the embedded model, for the trace
    params: SamplingParams = field(default_factory=SamplingParams)  # the client's, for re-asks
    outcome: str = ""  # valid | repaired | reasked | failed
    reasks: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def calls_allowed(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def calls_required(self) -> bool:
        return self.tool_choice in ("required", "function")

    def unenforced(self) -> list[str]:
        schemas = [t.compiled for t in self.tools.values()] + (
            [self.content_schema] if self.content_schema else []
        )
        return sorted({k for s in schemas for k in s.unenforced})

    def attributes(self) -> dict[str, Any]:
        """What happened, for the span and the trace."""
        attrs: dict[str, Any] = {
            "llmdock.structured.mode": self.mode,
            "llmdock.structured.outcome": self.outcome,
            "llmdock.structured.reasks": self.reasks,
            "llmdock.structured.grammar": self.grammar,
        }
        if self.errors:
            attrs["llmdock.structured.errors"] = [e[:300] for e in self.errors]
        unenforced = self.unenforced()
        if unenforced and not self.native:
            attrs["llmdock.structured.unenforced"] = unenforced
        return attrs

    @property
    def mode(self) -> str:
        if self.calls_allowed:
            return f"tools:{self.forced or self.tool_choice}" + (
                "" if self.content == "text" else "+" + self.content
            )
        return self.content


Compile = Callable[[str, str], CompiledSchema]
GrammarFor = Callable[[str], tuple[str, str]]


def plan_of(ctx: RequestContext) -> StructuredPlan | None:
    """The request's structured-output plan, if the structured stage made one."""
    plan = ctx.structured
    return plan if isinstance(plan, StructuredPlan) else None


def route_backends(backend: Backend) -> list[Backend]:
    deployments = getattr(backend, "all_deployments", None)  # a routed model: every deployment it may use
    return [d.backend for d in deployments()] if callable(deployments) else [backend]


def build_plan(
    ctx: RequestContext,
    compile_schema: Compile,
    grammar_for: GrammarFor,
    *,
    response_format: dict[str, Any] | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    parallel_tool_calls: bool | None = None,
) -> StructuredPlan | None:
    """Check the structured-output fields of a chat request and prepare ``ctx.request`` for them."""
    req = ctx.request
    assert req is not None
    assert req.messages is not None
    plan = StructuredPlan(params=replace(req.params, stop=list(req.params.stop)))
    fmt = response_format or {"type": "text"}
    if fmt["type"] == "json_object":
        plan.content = "json_object"
        plan.content_schema = compile_schema(orjson.dumps(JSON_OBJECT).decode(), "response_format")
    elif fmt["type"] == "json_schema":
        spec = fmt["json_schema"]
        plan.content = "json_schema"
        plan.schema_name = spec["name"]
        plan.content_schema = compile_schema(
            orjson.dumps(spec["schema"]).decode(),
            "response_format.json_schema.schema",
        )
    for i, tool in enumerate(tools or []):
        fn = tool["function"]
        if fn["name"] in plan.tools:
            raise InvalidRequest(
                f"tools.{i}.function.name: {fn['name']!r} is defined twice", param=f"tools.{i}.function.name"
            )
        params = fn.get("parameters")
        compiled = compile_schema(
            orjson.dumps(EMPTY_PARAMETERS if params is None else params).decode(),
            f"tools.{i}.function.parameters",
        )
        plan.tools[fn["name"]] = ToolSpec(fn["name"], fn.get("description") or "", compiled)
    _choose(plan, tool_choice, parallel_tool_calls)

    passed = {
        "response_format": response_format,
        "tools": tools,
        "tool_choice": tool_choice,
        "parallel_tool_calls": parallel_tool_calls,
    }
    req.extra.update({k: v for k, v in passed.items() if v is not None})
    plan.native = all(type(b).native_structured_output for b in route_backends(ctx.backend))
    if not plan.native:
        req.messages = [_as_text(m) for m in req.messages]
    if plan.content == "text" and not plan.calls_allowed:
        return None
    if not plan.native:
        req.messages = _with_instructions(req.messages, instructions(plan, fmt))
        req.grammar, plan.grammar = grammar_for(grammar_key(plan))
    else:
        plan.grammar = "native"
    return plan


def _choose(plan: StructuredPlan, choice: str | dict[str, Any] | None, parallel: bool | None) -> None:
    plan.parallel = parallel
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        if name not in plan.tools:
            known = ", ".join(plan.tools) or "none"
            raise InvalidRequest(
                f"tool_choice.function.name: {name!r} is not one of the tools (tools: {known})",
                param="tool_choice.function.name",
            )
        plan.tool_choice, plan.forced = "function", name
        plan.tools = {name: plan.tools[name]}
    elif choice is not None:
        if choice == "required" and not plan.tools:
            raise InvalidRequest(
                "tool_choice: 'required' needs at least one tool in 'tools'", param="tool_choice"
            )
        plan.tool_choice = choice  # type: ignore[assignment]
    else:
        plan.tool_choice = "auto" if plan.tools else "none"


def grammar_key(plan: StructuredPlan) -> str:
    """Everything that decides the grammar, as one string (the stage caches grammars by it).

    Keys keep their order: the grammar writes properties in the order the schema declares them.
    """
    key = {
        "content": plan.content,
        "schema": plan.content_schema.schema if plan.content_schema else None,
        "tools": {n: t.compiled.schema for n, t in plan.tools.items()} if plan.calls_allowed else {},
        "required": plan.calls_required,
        # OpenAI's default allows several calls at once; the embedded model makes one unless asked for more.
        "parallel": plan.parallel is True,
    }
    return orjson.dumps(key).decode()


def _as_text(message: dict[str, Any]) -> dict[str, Any]:
    """Earlier tool calls in the conversation, written as the canonical text the model itself would write."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = {k: v for k, v in message.items() if k != "tool_calls"}
    out["content"] = tool_calls_text(calls)
    return out


def _with_instructions(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0].get("role") in ("system", "developer"):
        first = dict(messages[0])
        content = first.get("content")
        if isinstance(content, list):
            first["content"] = [*content, {"type": "text", "text": "\n\n" + text}]
        else:
            first["content"] = f"{content or ''}\n\n{text}".lstrip()
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _schema_text(schema: dict[str, Any]) -> str:
    return orjson.dumps(schema).decode()


def instructions(plan: StructuredPlan, fmt: dict[str, Any]) -> str:
    """The system-message text telling a model without native support what to answer."""
    parts: list[str] = []
    if plan.calls_allowed:
        lines = ["You can call these tools (functions):"]
        for tool in plan.tools.values():
            desc = f": {tool.description}" if tool.description else ""
            lines.append(
                f"- {tool.name}{desc}. Arguments (JSON Schema): {_schema_text(tool.compiled.schema)}"
            )
        example = next(iter(plan.tools))
        lines.append(
            "To call tools, reply with only a JSON list of calls, like "
            f'[{{"name": "{example}", "arguments": {{...}}}}].'
        )
        if plan.forced:
            lines.append(f"You must call the tool {plan.forced}.")
        elif plan.calls_required:
            lines.append("You must call a tool.")
        parts.append("\n".join(lines))
    if plan.content != "text" and not plan.calls_required:
        lead = "If no tool is needed, reply" if plan.calls_allowed else "Reply"
        if plan.content == "json_object":
            parts.append(f"{lead} with only a JSON object, no other text.")
        else:
            spec = fmt["json_schema"]
            about = f" ({spec['description']})" if spec.get("description") else ""
            assert plan.content_schema is not None
            parts.append(
                f"{lead} with only a JSON value, no other text, following the JSON Schema "
                f"{spec['name']!r}{about}: {_schema_text(plan.content_schema.schema)}"
            )
    elif plan.calls_allowed and not plan.calls_required:
        parts.append("If no tool is needed, answer in plain text.")
    return "\n\n".join(parts)
