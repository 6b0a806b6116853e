"""The judge's prompt: the ``llmdock-judge`` template from the prompt registry when one is stored, else the
built-in G-Eval-style text below; and the verdict's JSON schema.

G-Eval (Liu et al., 2023) has the judge follow explicit evaluation steps and then fill in a form; here the
form is a JSON object whose ``reason`` comes before the ``score`` (or ``pass``), so the judge writes its
reasoning first. A stored template is rendered with the variables ``rubric``, ``input``, ``output``,
``expected``, ``context``, ``vars`` (the case's) and ``format`` (the reply instructions for the verdict's
form); one that does not use ``format`` gets those instructions added to its system message. The template's
``config`` gives the judge model and sampling defaults a check does not set. Which prompt judged is recorded
in every score's reason (``judge prompt llmdock-judge v3``, or ``judge prompt builtin-1`` for the text below).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from llmdock.errors import NotFound

if TYPE_CHECKING:  # the prompt registry is imported when a judge loads its template
    from llmdock.store.engine import Store

PROMPT_NAME = "llmdock-judge"
BUILTIN_VERSION = "builtin-1"
VerdictForm = Literal["score", "pass"]

_REASON = {"type": "string", "maxLength": 400}
SCHEMAS: dict[VerdictForm, dict[str, Any]] = {
    "score": {
        "type": "object",
        "properties": {"reason": _REASON, "score": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["reason", "score"],
        "additionalProperties": False,
    },
    "pass": {
        "type": "object",
        "properties": {"reason": _REASON, "pass": {"type": "boolean"}},
        "required": ["reason", "pass"],
        "additionalProperties": False,
    },
}
# What is accepted back, whichever form was asked for (a stored template may ask for the other one).
ACCEPTED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "pass": {"type": "boolean"},
    },
    "required": ["reason"],
    "anyOf": [{"required": ["score"]}, {"required": ["pass"]}],
}
FORMATS: dict[VerdictForm, str] = {
    "score": (
        'Reply with only a JSON object, no other text: {"reason": "<one or two sentences>", "score": <a '
        "number from 0 to 1>}. Score 1 when the answer fully meets the rubric, 0 when it does not meet it "
        "at all, and in between for a partial match."
    ),
    "pass": (
        'Reply with only a JSON object, no other text: {"reason": "<one or two sentences>", "pass": <true '
        "or false>}. pass is true only when the answer meets the rubric."
    ),
}

SYSTEM = """You are a strict, impartial evaluator. You grade an AI assistant's answer against a rubric.

Evaluation steps:
1. Read the rubric: it says what a good answer must do.
2. Read the question, and the reference answer and context when they are given.
3. Check the answer against each requirement of the rubric; ignore style unless the rubric asks about it.
4. Write your reason, then your verdict.

{{ format }}"""
USER = """Rubric: {{ rubric }}

Question: {{ input }}
{% if expected %}
Reference answer: {{ expected }}
{% endif %}{% if context %}
Context: {{ context }}
{% endif %}
Answer to grade: {{ output }}"""
BUILTIN_TEMPLATE = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]


@dataclass(frozen=True, slots=True)
class JudgePrompt:
    kind: str  # chat | text
    template: Any
    version: str  # "llmdock-judge v3", or BUILTIN_VERSION
    variables: frozenset[str]
    config: dict[str, Any] = field(default_factory=dict)

    def messages(self, variables: dict[str, Any], form: VerdictForm) -> list[dict[str, Any]]:
        """The rendered prompt as chat messages, with the reply instructions for ``form``."""
        values = {**variables, "format": FORMATS[form]}
        from llmdock.prompts import render

        rendered = render(self.kind, self.template, values, self.version)
        messages: list[dict[str, Any]] = (
            [{"role": "user", "content": rendered}] if isinstance(rendered, str) else list(rendered)
        )
        if "format" in self.variables:
            return messages
        if messages and messages[0]["role"] in ("system", "developer"):
            first = messages[0]
            return [{**first, "content": f"{first['content']}\n\n{values['format']}"}, *messages[1:]]
        return [{"role": "system", "content": values["format"]}, *messages]


BUILTIN = JudgePrompt("chat", BUILTIN_TEMPLATE, BUILTIN_VERSION, frozenset({"format"}))


def load_prompt(store: Store | None, name: str) -> JudgePrompt:
    """The stored template ``name`` (its ``production`` version, else the latest); for the default name with
    nothing stored (or no store), the built-in text. A NotFound for any other name is the caller's to report."""
    if store is None:
        if name != PROMPT_NAME:
            raise NotFound(f"prompt template {name!r}: the runtime has no store")
        return BUILTIN
    try:
        from llmdock.prompts import PromptRegistry

        row = PromptRegistry(store).get(name)
    except NotFound:
        if name != PROMPT_NAME:
            raise
        return BUILTIN
    return JudgePrompt(
        row.kind, row.template, f"{row.name} v{row.version}", frozenset(row.variables), dict(row.config)
    )
