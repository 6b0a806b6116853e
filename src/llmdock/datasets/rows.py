"""One dataset row, validated: ``{"messages": [{"role", "content"}...], "meta": {...}}``.

Every input format becomes this shape. Chat rows bring ``messages``; prompt/completion rows become a user
and an assistant message (with ``system`` as a system message when present); any other column is kept in
``meta`` (quasi-identifiers, labels, the split, ``synthetic``…). A chat row is trainable: an optional system
message first, then user and assistant turns alternating, starting with the user and holding at least one
assistant answer; ``tool`` messages may follow an assistant turn. Each problem is a :class:`RowError` naming
the field (``messages[2].role``), so the importer can report ``file:line: field: message``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

Row = dict[str, Any]
ROLES = frozenset({"system", "user", "assistant", "tool"})
TEXT_FIELDS = ("prompt", "completion", "system")


@dataclass(frozen=True, slots=True)
class RowError(Exception):
    """Why one row was dropped: the field, a message, and a short reason the report counts by."""

    field: str
    message: str
    reason: str

    def at(self, where: str) -> str:
        return f"{where}: {self.field}: {self.message}"


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise RowError(field, f"must be a string, not {_type(value)}", "wrong type")
    _decodable(value, field)
    if not value.strip():
        raise RowError(field, "is empty", "empty text")
    return value


def _decodable(value: str, field: str) -> None:
    """Undecodable bytes arrive as U+FFFD (a replacing decoder) or lone surrogates (``surrogateescape``)."""
    if "\ufffd" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise RowError(field, "holds bytes that are not UTF-8", "undecodable")


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _message(raw: Any, i: int) -> dict[str, str]:
    field = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise RowError(field, f"must be an object with role and content, not {_type(raw)}", "wrong type")
    for key in ("role", "content"):
        if key not in raw:
            raise RowError(f"{field}.{key}", "is missing", "missing field")
    role = raw["role"]
    if role not in ROLES:
        raise RowError(f"{field}.role", f"{role!r} is not one of {', '.join(sorted(ROLES))}", "unknown role")
    return {"role": role, "content": _text(raw["content"], f"{field}.content")}


def check_order(messages: list[dict[str, str]]) -> None:
    """System first (optional), then user and assistant alternating from the user; tool after assistant."""
    expected = "user"
    for i, m in enumerate(messages):
        role = m["role"]
        if role == "system" and i == 0:
            continue
        if role == "tool" and i > 0 and messages[i - 1]["role"] in ("assistant", "tool"):
            continue
        if role != expected:
            raise RowError(
                f"messages[{i}].role", f"{role!r} out of order: expected {expected!r}", "role order"
            )
        expected = "assistant" if role == "user" else "user"
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError("messages", "has no assistant message to learn from", "no answer")


def _messages(raw: Any) -> list[dict[str, str]]:
    if isinstance(raw, str):  # a CSV cell holding the messages as JSON
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RowError("messages", f"is not valid JSON: {exc}", "invalid JSON") from None
    if not isinstance(raw, list):
        raise RowError("messages", f"must be a list of messages, not {_type(raw)}", "wrong type")
    if not raw:
        raise RowError("messages", "is empty", "empty messages")
    messages = [_message(m, i) for i, m in enumerate(raw)]
    check_order(messages)
    return messages


def _from_prompt(raw: dict[str, Any]) -> list[dict[str, str]]:
    messages = []
    if raw.get("system") not in (None, ""):
        messages.append({"role": "system", "content": _text(raw["system"], "system")})
    messages.append({"role": "user", "content": _text(raw["prompt"], "prompt")})
    messages.append({"role": "assistant", "content": _text(raw["completion"], "completion")})
    return messages


def _meta_value(value: Any, field: str) -> Any:
    if isinstance(value, float) and value != value:  # NaN: a missing cell in pandas/Parquet
        return None
    if isinstance(value, str):
        _decodable(value, field)
    return value


def validate(raw: Any) -> Row:
    """The row in its canonical shape, or a :class:`RowError`."""
    if not isinstance(raw, dict):
        raise RowError("row", f"must be an object, not {_type(raw)}", "wrong type")
    if raw.get("messages") is not None:
        messages, used = _messages(raw["messages"]), {"messages"}
    elif "prompt" in raw or "completion" in raw:
        for key in ("prompt", "completion"):
            if raw.get(key) is None:
                raise RowError(key, "is missing", "missing field")
        messages, used = _from_prompt(raw), set(TEXT_FIELDS)
    else:
        raise RowError("row", "needs `messages`, or `prompt` and `completion`", "missing field")
    given: dict[str, Any] = raw["meta"] if isinstance(raw.get("meta"), dict) else {}
    meta = {str(k): _meta_value(v, f"meta.{k}") for k, v in given.items()}
    for key, value in raw.items():
        if key not in used and key != "meta":
            meta[str(key)] = _meta_value(value, str(key))
    meta = {k: v for k, v in meta.items() if v is not None}  # a missing cell and a null are one thing
    return {"messages": messages, "meta": meta}


def row_text(row: Row) -> str:
    """The row's text as one string (what dedup, language and length filters read)."""
    return "\n".join(m["content"] for m in row["messages"])
