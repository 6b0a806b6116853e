"""Prompt templates: a versioned, labelled registry and sandboxed Jinja rendering."""

from llmdock.prompts.apply import PromptCall, apply_prompt
from llmdock.prompts.client import Prompt, clear_cache, get
from llmdock.prompts.reasoning import split as split_reasoning
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
    "Prompt",
    "PromptCall",
    "PromptRegistry",
    "PromptResolver",
    "ResolvedPrompt",
    "apply_prompt",
    "check_template",
    "clear_cache",
    "get",
    "prompt_view",
    "render",
    "split_reasoning",
]
