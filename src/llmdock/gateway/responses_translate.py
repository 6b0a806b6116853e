"""The Responses API in terms of chat completions: a request becomes a chat request, an answer output items.

A Responses request runs the same pipeline as ``/v1/chat/completions``: :func:`chat_body` turns it (and the
stored conversation it continues) into a :class:`ChatCompletionBody`, and :func:`output_items` /
:class:`ResponseDraft` turn the pipeline's answer back into the Responses shapes. Errors the chat path raises
name chat fields (``response_format.json_schema.schema``); :func:`responses_error` renames them to the
fields this request sent (``text.format.schema``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from llmdock.backends.base import Generation
from llmdock.errors import LlmdockError
from llmdock.gateway.responses_schemas import ResponsesBody
from llmdock.gateway.schemas import ChatCompletionBody

RESPONSE_PREFIX = "resp_"


def response_id(trace_id: str) -> str:
    """A response's id: its trace's id, so the trace of any stored response is found from it."""
    return RESPONSE_PREFIX + trace_id


def text_of(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content)


def chat_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses items as chat messages: consecutive ``function_call`` items become one assistant message
    with ``tool_calls``; a ``function_call_output`` a ``tool`` message."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
        else:
            messages.append({"role": item["role"], "content": text_of(item["content"])})
    return messages


def chat_format(fmt: dict[str, Any]) -> dict[str, Any] | None:
    """``text.format`` as a chat ``response_format`` (None for plain text)."""
    if fmt["type"] == "text":
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    spec = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
    return {"type": "json_schema", "json_schema": spec}


def chat_body(body: ResponsesBody, earlier: list[dict[str, Any]]) -> ChatCompletionBody:
    """The chat request a Responses request is: the instructions, the ``earlier`` conversation (items of the
    response it continues), its own input; its tools, format and sampling under their chat names."""
    head = [{"role": "system", "content": body.instructions}] if body.instructions else []
    choice = body.tool_choice
    fields: dict[str, Any] = {
        "model": body.model,
        "messages": [*head, *chat_messages([*earlier, *body.input_items()])],
        "max_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "user": body.user,
        "stream": body.stream,
        "response_format": chat_format(body.format()),
        "tools": [
            {"type": "function", "function": t.model_dump(exclude_none=True, exclude={"type"})}
            for t in body.tools
        ]
        if body.tools
        else None,
        "tool_choice": {"type": "function", "function": {"name": choice.name}}
        if choice is not None and not isinstance(choice, str)
        else choice,
        "parallel_tool_calls": body.parallel_tool_calls,
    }
    return ChatCompletionBody.model_validate({k: v for k, v in fields.items() if v is not None})


# The chat fields an error may name, and the Responses fields they came from.
RENAMES = [
    (re.compile(r"^response_format\.json_schema\.(\w+)"), r"text.format.\1"),
    (re.compile(r"^response_format"), "text.format"),
    (re.compile(r"^tools\.(\d+)\.function\."), r"tools.\1."),
    (re.compile(r"^tool_choice\.function\."), "tool_choice."),
    (re.compile(r"^max_tokens"), "max_output_tokens"),
    (re.compile(r"^messages"), "input"),
]


def responses_error(exc: LlmdockError) -> LlmdockError:
    """``exc`` naming the Responses field at fault instead of the chat field (in ``param`` and message)."""
    if not exc.param:
        return exc
    old = exc.param
    for pattern, new in RENAMES:
        renamed = pattern.sub(new, old)
        if renamed != old:
            exc.param = renamed
            if exc.message.startswith(old):
                exc.message = renamed + exc.message[len(old) :]
            break
    return exc


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    """An assistant message; ``text`` None while it is being written (no content part yet)."""
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [] if text is None else [text_part(text)],
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """An OpenAI-shaped chat tool call (``{id, function: {name, arguments}}``) as a ``function_call`` item."""
    call_id: str = call["id"]
    return {
        "type": "function_call",
        "id": "fc_" + call_id.removeprefix("call_"),
        "call_id": call_id,
        "name": call["function"]["name"],
        "arguments": call["function"].get("arguments", ""),
        "status": status,
    }


def output_items(gen: Generation, trace_id: str) -> list[dict[str, Any]]:
    """A whole answer's output: its tool calls, else one assistant message (incomplete if cut off)."""
    if gen.tool_calls:
        return [call_item(call) for call in gen.tool_calls]
    return [message_item("msg_" + trace_id, gen.text, final_status(gen.finish_reason))]


def input_with_ids(items: list[dict[str, Any]], trace_id: str) -> list[dict[str, Any]]:
    """Input items as ``input_items`` lists them: each with an id."""
    listed = []
    for i, item in enumerate(items):
        item = {"type": "message", **item}
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}[item["type"]]
        item.setdefault("id", f"{prefix}_{trace_id}_{i}")
        listed.append(item)
    return listed


@dataclass(slots=True)
class ResponseDraft:
    """What a response object says besides its output: the request's settings, its id and time."""

    body: ResponsesBody
    id: str
    store: bool
    created_at: int = field(default_factory=lambda: int(time.time()))

    def render(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The response object with ``status`` (in_progress, completed, incomplete, failed)."""
        b = self.body
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": error,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": b.instructions,
            "max_output_tokens": b.max_output_tokens,
            "model": b.model,
            "output": output,
            "parallel_tool_calls": b.parallel_tool_calls is not False,
            "previous_response_id": b.previous_response_id,
            "reasoning": {"effort": None, "summary": None},
            "store": self.store,
            "temperature": b.temperature,
            "text": {"format": b.format()},
            "tool_choice": b.tool_choice.model_dump()
            if b.tool_choice is not None and not isinstance(b.tool_choice, str)
            else b.tool_choice or "auto",
            "tools": [t.model_dump(exclude_none=True) for t in b.tools or []],
            "top_p": b.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": b.user,
            "metadata": b.metadata or {},
        }


def responses_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def final_status(finish_reason: str) -> str:
    return "incomplete" if finish_reason == "length" else "completed"
