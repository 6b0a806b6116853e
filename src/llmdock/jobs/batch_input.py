"""Batch input: one OpenAI request per line, as a chat body or as a line of OpenAI's Batch API.

A line is either a request body itself (``{"messages": [...], ...}``) or the Batch API's line
(``{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}``). A line that is
neither is reported as ``file:line: message`` and stays in the batch as a row with that error, so the output
keeps one line per input line and its order; blank lines are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

CHAT_URL = "/v1/chat/completions"
URLS = (CHAT_URL, "/v1/completions")


@dataclass
class Row:
    """One input line: its place in the batch (``index``, 0-based, blank lines not counted), its line number,
    and the request, or why the line could not be read (``error``)."""

    index: int
    line: int
    custom_id: str
    url: str = CHAT_URL
    body: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def _request_of(data: Any, where: str) -> tuple[str | None, str, dict[str, Any]]:
    """(custom_id, url, body) of a parsed line; ValueError naming the field at fault."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a line is a JSON object")
    if "body" not in data:
        if "messages" not in data and "prompt" not in data:
            raise ValueError(
                f"{where}: messages: a line is a chat body (messages) or a Batch API line (body)"
            )
        custom = data.get("custom_id")
        body = {k: v for k, v in data.items() if k != "custom_id"}
        return (
            (str(custom) if custom is not None else None),
            (CHAT_URL if "messages" in body else URLS[1]),
            body,
        )
    if not isinstance(data["body"], dict):
        raise ValueError(f"{where}: body: must be a JSON object")
    method = data.get("method", "POST")
    if method != "POST":
        raise ValueError(f"{where}: method: only POST is supported, not {method!r}")
    url = data.get("url", CHAT_URL)
    if url not in URLS:
        raise ValueError(f"{where}: url: {url!r} is not supported (supported: {', '.join(URLS)})")
    custom = data.get("custom_id")
    if custom is not None and not isinstance(custom, str):
        raise ValueError(f"{where}: custom_id: must be a string")
    return custom, url, data["body"]


def parse_line(raw: bytes, index: int, line: int, where: str) -> Row:
    """The row of one non-blank line; a malformed line gives a row holding its ``file:line: message``."""
    try:
        data = orjson.loads(raw)
        custom, url, body = _request_of(data, where)
    except orjson.JSONDecodeError as exc:
        return Row(index, line, f"line-{line}", error=f"{where}: not valid JSON: {exc}")
    except ValueError as exc:
        return Row(index, line, f"line-{line}", error=str(exc))
    return Row(index, line, custom if custom is not None else f"line-{line}", url, body)


def read_rows(path: Path, name: str | None = None) -> Iterator[Row]:
    """The rows of a JSONL file, in order, read as they are needed (a file of millions of lines is fine)."""
    shown = name or str(path)
    index = 0
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            yield parse_line(raw, index, number, f"{shown}:{number}")
            index += 1


def count_rows(path: Path) -> int:
    """How many rows the file holds (non-blank lines), for the progress bar."""
    with path.open("rb") as fh:
        return sum(1 for raw in fh if raw.strip())
