"""What an experiment is made of, parsed and checked: variants, weights, stickiness, the traffic it takes.

A variant is ``NAME=PART[,PART]`` where a part is ``prompt:TEMPLATE@VERSION`` (or ``@label``, fixed to the
version it points at when the experiment is created) or ``model:MODEL`` (a model the gateway serves). The
experiment takes requests that match all of ``match`` (``prompt``, ``model``, ``route``); by default the
template its variants share. Two running experiments must not match the same traffic.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from llmdock.errors import InvalidRequest

Sticky = Literal["user", "session", "key"]
STICKY: tuple[Sticky, ...] = ("user", "session", "key")
MATCH_KEYS = ("prompt", "model", "route")
ROUTES = ("/v1/chat/completions", "/v1/completions")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
PROMPT_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.:-]*)@(?P<ref>[A-Za-z0-9_.-]+)$")


@dataclass(slots=True)
class VariantSpec:
    name: str
    prompt: str | None = None
    prompt_ref: str | None = None  # a version number or a label, as given
    prompt_version: int | None = None  # resolved when the experiment is created
    model: str | None = None
    weight: int = 0
    stopped: str = ""  # why a guard rail stopped it ("" while it runs)
    registry: str | None = None  # served as this pinned registry version (``model`` then names its route)

    def describe(self) -> str:
        parts = [f"prompt:{self.prompt}@{self.prompt_version or self.prompt_ref}"] if self.prompt else []
        return ",".join([*parts, *([f"model:{self.model}"] if self.model else [])])

    def to_json(self) -> dict[str, Any]:
        """As stored: everything but ``prompt_ref`` (resolved into ``prompt_version`` by then)."""
        return {k: v for k, v in asdict(self).items() if k != "prompt_ref"}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantSpec:
        return cls(
            data["name"],
            data.get("prompt"),
            None,
            data.get("prompt_version"),
            data.get("model"),
            int(data["weight"]),
            data.get("stopped", ""),
            data.get("registry"),
        )


@dataclass(slots=True)
class GuardRails:
    """Bounds past which a variant is stopped early (its traffic goes to the others); None = no bound."""

    max_error_rate: float | None = None
    max_block_rate: float | None = None  # share of requests a guard refused
    max_p50_ms: float | None = None
    min_samples: int = 20  # judged only once a variant has this many requests

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ExperimentSpec:
    name: str
    variants: list[VariantSpec]
    sticky: Sticky = "user"
    match: dict[str, str] = field(default_factory=dict)
    guard: GuardRails = field(default_factory=GuardRails)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    label: str = "production"  # the prompt label a prompt winner gets
    release: dict[str, Any] | None = (
        None  # a canary release's model, challenger and rules (experiments.release)
    )


def parse_variant(text: str) -> VariantSpec:
    """``b=prompt:support@4,model:smollm2`` → a variant (weights are given apart)."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not rest:
        raise InvalidRequest(f"variant {text!r}: give NAME=prompt:T@V or NAME=model:M", param="variant")
    check_name(name, "variant")
    variant = VariantSpec(name)
    for part in rest.split(","):
        kind, sep, value = part.strip().partition(":")
        if kind == "prompt" and sep and (m := PROMPT_RE.match(value)):
            if variant.prompt is not None:
                raise InvalidRequest(f"variant {name!r}: one prompt per variant", param="variant")
            variant.prompt, variant.prompt_ref = m["name"], m["ref"]
        elif kind == "model" and sep and value:
            if variant.model is not None:
                raise InvalidRequest(f"variant {name!r}: one model per variant", param="variant")
            variant.model = value
        else:
            raise InvalidRequest(
                f"variant {name!r}: {part!r} is neither prompt:TEMPLATE@VERSION nor model:MODEL",
                param="variant",
            )
    return variant


def check_name(name: str, what: str) -> str:
    if not NAME_RE.match(name):
        raise InvalidRequest(
            f"{what} name {name!r}: lower-case letters, digits and _ . - only (at most 64)", param="name"
        )
    return name


def parse_weights(text: str | None, count: int) -> list[int]:
    """``50,50`` → [50, 50]; none given → an even split. They must be whole percents summing to 100."""
    if not text:
        even = [100 // count] * count
        even[0] += 100 - sum(even)
        return even
    try:
        weights = [int(w) for w in text.split(",")]
    except ValueError:
        raise InvalidRequest(f"weights {text!r}: whole percents, comma-separated", param="weights") from None
    if len(weights) != count:
        raise InvalidRequest(f"{len(weights)} weights for {count} variants", param="weights")
    if any(w <= 0 for w in weights) or sum(weights) != 100:
        raise InvalidRequest(
            f"weights {text!r} sum to {sum(weights)}; they must be positive and sum to 100", param="weights"
        )
    return weights


def parse_match(pairs: list[str]) -> dict[str, str]:
    match: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in MATCH_KEYS or not value:
            raise InvalidRequest(f"match {pair!r}: give one of {', '.join(MATCH_KEYS)}=VALUE", param="match")
        if key == "route" and value not in ROUTES:
            raise InvalidRequest(f"match route {value!r}: one of {', '.join(ROUTES)}", param="match")
        match[key] = value
    return match


def default_match(variants: list[VariantSpec], match: dict[str, str]) -> dict[str, str]:
    """``match`` as given, else the template every variant names; an experiment without either is refused
    (it would take every request)."""
    if match:
        return match
    prompts = {v.prompt for v in variants}
    if len(prompts) == 1 and None not in prompts:
        return {"prompt": str(prompts.pop())}
    raise InvalidRequest(
        "say which traffic the experiment takes: --match prompt=T, model=M or route=/v1/…", param="match"
    )


def overlaps(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether some request could match both: no key set in both with different values."""
    return all(a[k] == b[k] for k in MATCH_KEYS if k in a and k in b)
