"""Prompts as code: a version's difference from another, and a directory of template files synced into the
registry (new content becomes the next version, unchanged files do nothing, nothing is ever deleted).

``plan`` checks every file before anything is written, so a bad file stops the whole sync with its
``file:line: field`` and the registry is untouched.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from llmdock.prompts.registry import PromptRegistry, check_config, content_hash
from llmdock.prompts.render import check_template
from llmdock.store.audit import Actor
from llmdock.store.models import PromptVersion


def _lines(row: PromptVersion) -> list[str]:
    """A version as text lines a person can diff: its messages (or text), then its config, key by key."""
    out = [f"kind: {row.kind}"]
    if row.kind == "text":
        out += ["text:", *(f"  {line}" for line in str(row.template).splitlines())]
    else:
        for i, m in enumerate(row.template):
            out.append(f"messages.{i}.role: {m['role']}")
            out += [f"messages.{i}.content:", *(f"  {line}" for line in m["content"].splitlines())]
    out += [f"config.{k}: {json.dumps(v)}" for k, v in sorted(row.config.items())]
    return out


def version_diff(a: PromptVersion, b: PromptVersion) -> str:
    """A unified diff from version ``a`` to ``b`` (template and config); empty when they are equal."""
    return "\n".join(
        difflib.unified_diff(
            _lines(a), _lines(b), f"{a.name}@{a.version}", f"{b.name}@{b.version}", lineterm=""
        )
    )


@dataclass(frozen=True, slots=True)
class TemplateFile:
    """One file's template, as read: ``where`` names file:line for a field path (for errors)."""

    path: str
    name: str
    kind: str
    template: Any
    config: dict[str, Any]
    message: str


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    path: str
    action: str  # "new template", "new version", "unchanged", "kept (no file)"
    version: int | None  # the latest version now (None for a new template)


def step_for(registry: PromptRegistry, f: TemplateFile) -> Step:
    """What syncing one file would do; InvalidRequest (naming the field) for a bad template or config."""
    check_template(f.kind, f.template)
    sha = content_hash(f.kind, f.template, check_config(dict(f.config)))
    latest = registry.labels.latest(f.name)
    if latest is None:
        return Step(f.name, f.path, "new template", None)
    same = registry.get(f.name, version=latest).sha256 == sha
    return Step(f.name, f.path, "unchanged" if same else "new version", latest)


def kept(registry: PromptRegistry, named: set[str]) -> list[Step]:
    """The stored templates no file names: left as they are (a sync never deletes a version)."""
    return [Step(n, "", "kept (no file)", latest) for n, _, latest in registry.names() if n not in named]


def apply(registry: PromptRegistry, f: TemplateFile, actor: Actor) -> int:
    """Save one file's template (the next version, or nothing when unchanged); returns the version."""
    row, _ = registry.create(
        f.name, actor, kind=f.kind, template=f.template, config=f.config, message=f.message
    )
    return row.version
