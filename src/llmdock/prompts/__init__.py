"""Prompt templates: a versioned, labelled registry and sandboxed Jinja rendering."""

from llmdock.prompts.apply import PromptCall, apply_prompt
from llmdock.prompts.registry import (
    DEFAULT_LABEL,
    PromptRegistry,
    PromptResolver,
    ResolvedPrompt,
    prompt_view,
)
from llmdock.prompts.render import check_template, render

__all__ = [
    "DEFAULT_LABEL",
    "PromptCall",
    "PromptRegistry",
    "PromptResolver",
    "ResolvedPrompt",
    "apply_prompt",
    "check_template",
    "prompt_view",
    "render",
]
