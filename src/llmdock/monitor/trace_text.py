"""The text a stored trace's caller sent, as drift and online evaluation read it (no heavy imports here: the
gateway imports this at start when online evaluation is on)."""

from __future__ import annotations

from typing import Any


def last_user_text(inputs: dict[str, Any]) -> str:
    """The text the caller sent: the last user message (chat), the prompt, or the embedded inputs."""
    for message in reversed(inputs.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    prompt = inputs.get("prompt") or inputs.get("input") or ""
    return " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)
