"""The prompt registry: named templates with immutable, numbered versions and movable labels.

Saving content identical to the latest version returns that version (so ``llmdock prompts push`` in CI is
idempotent); anything else becomes the next version. Labels (``production``, ``staging``…) are promoted
through ``Labels``, audited. A request names a template by ``prompt_id`` plus ``prompt_version`` or
``prompt_label``; with neither it gets the version labelled ``production``, else the latest.

``PromptResolver`` keeps resolved versions for ``prompts.cache_ttl_s`` seconds per process, so the hot path
does not read the store for every request; a promotion reaches every worker within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmdock.errors import InvalidRequest, NotFound
from llmdock.prompts.render import check_template
from llmdock.registry.labels import LATEST, Versioned, check_name
from llmdock.store.audit import Actor
from llmdock.store.models import PromptVersion

DEFAULT_LABEL = "production"
REQUEST_FIELDS = {"name": "prompt_id", "version": "prompt_version", "label": "prompt_label"}


class Example(BaseModel):
    """One few-shot example: a user turn and the answer wanted, rendered as two messages."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1)
    assistant: str = Field(min_length=1)


class PromptConfig(BaseModel):
    """Defaults a template carries (the model and sampling values a request does not set itself), and its
    few-shot ``examples`` and ``reasoning`` mode (see prompts.apply and prompts.reasoning)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: list[str] | None = Field(default=None, max_length=4)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    examples: list[Example] | None = Field(default=None, min_length=1, max_length=64)
    reasoning: bool | None = None


def content_hash(kind: str, template: Any, config: dict[str, Any]) -> str:
    data = json.dumps([kind, template, config], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def prompt_view(v: PromptVersion, labels: list[str] | None = None) -> dict[str, Any]:
    return PromptRegistry.view(v, labels)


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    try:
        checked = PromptConfig.model_validate(config)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in ("config", *first["loc"]))
        raise InvalidRequest(first["msg"], param=field) from None
    return checked.model_dump(exclude_none=True)


class PromptRegistry(Versioned[PromptVersion]):
    kind = "prompt"
    row_type = PromptVersion
    labels_key = "labels"
    view_fields = tuple(
        "name version kind template variables config message labels sha256 created_by created_at".split()
    )

    def create(
        self,
        name: str,
        actor: Actor,
        *,
        kind: str,
        template: Any,
        config: dict[str, Any] | None = None,
        message: str = "",
    ) -> tuple[PromptVersion, bool]:
        """Save a version; returns (the version, whether it is new)."""
        check_name(name, "prompt")
        variables = check_template(kind, template)
        config = check_config(dict(config or {}))
        if kind == "text" and (config.get("examples") or config.get("reasoning")):
            raise InvalidRequest("few-shot examples and reasoning need a chat template", param="config")
        sha = content_hash(kind, template, config)
        latest = self.labels.latest(name)
        if latest is not None:
            current = self._row(name, latest)
            if current.sha256 == sha:
                return current, False

        fields = {
            "kind": kind,
            "template": template,
            "variables": variables,
            "config": config,
            "message": message,
            "sha256": sha,
        }
        return self._add_next(name, actor, fields, ("kind", "sha256", "variables", "config", "message")), True

    def get(self, name: str, *, version: int | None = None, label: str | None = None) -> PromptVersion:
        """One version: by number, by label, else ``production``, else the latest."""
        if version is None:
            version = self.labels.get(name, label or DEFAULT_LABEL)
            if version is None and label is None:
                version = self.labels.get(name, LATEST)
            if version is None:
                self.versions(name)  # NotFound for an unknown template
                raise NotFound(f"prompt template {name!r} has no label {label!r}", param="prompt_label")
        return self._row(name, version)


@dataclass(frozen=True, slots=True)
class ResolvedPrompt:
    name: str
    version: int
    kind: str
    template: Any
    variables: tuple[str, ...]
    config: dict[str, Any]


class PromptResolver:
    """Versions by (name, version, label), cached per process for ``ttl`` seconds; store reads off the loop."""

    def __init__(self, registry: PromptRegistry, ttl: float) -> None:
        self.registry = registry
        self.ttl = ttl
        self._cache: dict[tuple[str, int | None, str | None], tuple[float, ResolvedPrompt]] = {}

    def forget(self, name: str) -> None:
        """Drop cached versions of one template (its labels moved through this worker)."""
        for key in [k for k in self._cache if k[0] == name]:
            del self._cache[key]

    async def resolve(self, name: str, version: int | None, label: str | None) -> ResolvedPrompt:
        key = (name, version, label)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            row = await asyncio.to_thread(self.registry.get, name, version=version, label=label)
        except NotFound as exc:  # name the request's field
            exc.param = REQUEST_FIELDS.get(exc.param or "", exc.param)
            raise
        found = ResolvedPrompt(
            row.name, row.version, row.kind, row.template, tuple(row.variables), dict(row.config)
        )
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[key] = (now, found)
        return found
