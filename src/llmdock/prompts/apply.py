"""A request that names a prompt template: the template is rendered into it by the pre-process stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmdock.backends.base import GenerationRequest
from llmdock.prompts.reasoning import INSTRUCTION
from llmdock.prompts.registry import ResolvedPrompt
from llmdock.prompts.render import render

TEMPLATE_FEATURES = ("model", "examples", "reasoning")  # config keys that are not sampling defaults


@dataclass(slots=True)
class PromptCall:
    prompt: ResolvedPrompt
    variables: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.prompt.name}/{self.prompt.version}"

    def attributes(self) -> dict[str, Any]:
        """What the trace records: which template and version answered (for analytics per version)."""
        attrs: dict[str, Any] = {
            "llmdock.prompt_template": self.prompt.name,
            "llmdock.prompt_version": self.prompt.version,
        }
        if self.label:
            attrs["llmdock.prompt_label"] = self.label
        return attrs


def apply_prompt(call: PromptCall, req: GenerationRequest) -> None:
    """Render the template and put it in front of what the request sent; fill unset sampling values."""
    p = call.prompt
    rendered = render(p.kind, p.template, call.variables, call.ref)
    if p.kind == "chat":
        rendered = with_features(rendered, p.config)
    req.op.apply_template(req, rendered, chat_template=p.kind == "chat", name=p.name)
    config = {k: v for k, v in p.config.items() if k not in TEMPLATE_FEATURES}
    stop = config.pop("stop", None)
    req.params.with_defaults(config)
    if stop and not req.params.stop:
        req.params.stop = list(stop)


def with_features(messages: list[dict[str, str]], config: dict[str, Any]) -> list[dict[str, str]]:
    """The rendered messages with the reasoning instruction (in the system message) and the few-shot
    examples (user/assistant pairs after the system messages, before the template's own turns)."""
    lead = 0
    while lead < len(messages) and messages[lead]["role"] in ("system", "developer"):
        lead += 1
    system = messages[:lead]
    if config.get("reasoning"):
        if system:
            system = [{**system[0], "content": f"{system[0]['content']}\n\n{INSTRUCTION}"}, *system[1:]]
        else:
            system = [{"role": "system", "content": INSTRUCTION}]
    shots = [
        {"role": role, "content": example[role]}
        for example in config.get("examples") or ()
        for role in ("user", "assistant")
    ]
    return [*system, *shots, *messages[lead:]]
