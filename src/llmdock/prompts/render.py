"""Prompt templates: Jinja in a sandbox, with the variables each template needs found when it is saved.

The sandbox (``ImmutableSandboxedEnvironment``) refuses attribute tricks such as ``{{ x.__class__ }}`` and
any mutation of the values passed in, so a template stored by one person cannot reach into the server.
Undefined variables are errors (``StrictUndefined``), never silently empty text.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmdock.errors import InvalidRequest

ROLES = ("system", "developer", "user", "assistant")
_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _parts(kind: str, template: Any) -> list[tuple[str, str]]:
    """(where, text) of every piece of a template: ``messages.0.content`` … or ``text``."""
    if kind == "text":
        return [("text", template)]
    return [(f"messages.{i}.content", m["content"]) for i, m in enumerate(template)]


def check_template(kind: str, template: Any) -> list[str]:
    """Validate a template's shape and syntax; returns the variables it uses, sorted."""
    if kind == "text":
        if not isinstance(template, str) or not template:
            raise InvalidRequest("a text template is a non-empty string", param="text")
    elif kind == "chat":
        if not isinstance(template, list) or not template:
            raise InvalidRequest("a chat template is a non-empty list of messages", param="messages")
        for i, m in enumerate(template):
            if not isinstance(m, dict) or set(m) != {"role", "content"}:
                raise InvalidRequest("each message has exactly 'role' and 'content'", param=f"messages.{i}")
            if m["role"] not in ROLES:
                raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", param=f"messages.{i}.role")
            if not isinstance(m["content"], str):
                raise InvalidRequest("content must be a string", param=f"messages.{i}.content")
    else:
        raise InvalidRequest("kind must be 'chat' or 'text'", param="kind")
    names: set[str] = set()
    for where, text in _parts(kind, template):
        try:
            names |= meta.find_undeclared_variables(_env.parse(text))
        except TemplateSyntaxError as exc:
            raise InvalidRequest(f"template syntax: {exc.message} (line {exc.lineno})", param=where) from None
    return sorted(names)


def render(kind: str, template: Any, variables: dict[str, Any], label: str) -> Any:
    """The template with its variables filled in: messages for chat, a string for text."""
    out: list[str] = []
    for where, text in _parts(kind, template):
        try:
            out.append(_env.from_string(text).render(variables))
        except UndefinedError as exc:
            raise InvalidRequest(f"prompt {label}: {exc.message}", param="prompt_variables") from None
        except SecurityError as exc:
            raise InvalidRequest(
                f"prompt {label} ({where}): refused by the sandbox: {exc}", param="prompt_id"
            ) from None
        except Exception as exc:  # a template error that only shows with these values (e.g. a bad filter arg)
            raise InvalidRequest(
                f"prompt {label} ({where}): {type(exc).__name__}: {exc}", param="prompt_variables"
            ) from None
    if kind == "text":
        return out[0]
    return [{"role": m["role"], "content": text} for m, text in zip(template, out, strict=True)]
