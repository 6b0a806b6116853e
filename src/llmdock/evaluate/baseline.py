"""What ``llmdock eval gate --baseline`` compares with: a stored run, named by its id, or found through the
registries as the newest run of the same suite that a model version or a prompt version answered.

- ``RUN_ID`` (or a unique prefix): that run.
- ``NAME@alias`` / ``NAME/3`` of a registered model (``model:NAME@alias`` or ``models:/NAME@alias`` to say so):
  the newest run of the suite with a result served from that version's artifact (the sha256 the model
  registry stores; results record the artifact their model was loaded from).
- ``NAME@label`` / ``NAME/3`` of a prompt template (``prompt:NAME@label`` to say so): the newest run of the
  suite with a result rendered from that prompt version.

A bare ``NAME@x`` is looked up in both registries; a name in both must say which. No matching run is an
error that says what to run to make one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select

from llmdock.errors import InvalidRequest, NotFound
from llmdock.evaluate.results import get_run
from llmdock.prompts import PromptRegistry
from llmdock.registry import LATEST, URI_PREFIX, ModelRef, ModelRegistry
from llmdock.store.engine import Store
from llmdock.store.models import EvalResult, EvalRun

Kind = Literal["model", "prompt"]
PREFIXES: dict[str, Kind] = {"model:": "model", URI_PREFIX: "model", "prompt:": "prompt"}


@dataclass(frozen=True, slots=True)
class RegistryRef:
    """``NAME@label`` or ``NAME/version`` (``kind`` None: not said, looked up in both registries)."""

    kind: Kind | None
    name: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        return f"{self.name}/{self.version}" if self.version is not None else f"{self.name}@{self.label}"


@dataclass(frozen=True, slots=True)
class Baseline:
    run: EvalRun
    why: str  # one line for people: which run, and what it was served by


def parse_ref(ref: str) -> RegistryRef | None:
    """A registry reference, or None for a run id (which never holds ``@`` or ``/``)."""
    kind: Kind | None = None
    for prefix, prefix_kind in PREFIXES.items():
        if ref.startswith(prefix):
            kind, ref = prefix_kind, ref.removeprefix(prefix)
            break
    if "@" in ref:
        name, _, label = ref.rpartition("@")
        return RegistryRef(kind, name, label=label or LATEST)
    name, slash, tail = ref.rpartition("/")
    if slash and tail.isdigit():
        return RegistryRef(kind, name, version=int(tail))
    if kind is not None:  # model:NAME or prompt:NAME: its latest version
        return RegistryRef(kind, ref, label=LATEST)
    return None


def find_baseline(store: Store, home: Path, suite: str, ref: str) -> Baseline:
    """The run ``--baseline ref`` names for ``suite``. Raises NotFound (saying what to run) or InvalidRequest."""
    parsed = parse_ref(ref)
    if parsed is None:
        run = get_run(store, ref)
        return Baseline(run, f"baseline: run {run.id} ({run.suite}, {run.created_at:%Y-%m-%d %H:%M})")
    kind = parsed.kind or _which_registry(store, home, parsed)
    if kind == "model":
        row = ModelRegistry(store, home).get(ModelRef(parsed.name, parsed.version, parsed.label))
        served = f"model {row.name} version {row.version} (artifact {row.artifact[:12]})"
        match = _served_by({"llmdock.served_artifact": row.artifact})
        how = f"a target whose model's model_path is models:/{parsed}"
    else:
        prompt = PromptRegistry(store).get(parsed.name, version=parsed.version, label=parsed.label)
        served = f"prompt {prompt.name} version {prompt.version}"
        match = _served_by({"llmdock.prompt_template": prompt.name, "llmdock.prompt_version": prompt.version})
        how = f"a target with `prompt: {parsed}`"
    newest = newest_run(store, suite, match)
    if newest is None:
        raise NotFound(
            f"no stored run of suite {suite!r} was answered by {served} ({parsed}): run "
            f"`llmdock eval run` on the suite with {how} first, then gate against it",
            param="baseline",
        )
    return Baseline(newest, f"baseline: run {newest.id}, the newest of suite {suite!r} answered by {served}")


def _which_registry(store: Store, home: Path, ref: RegistryRef) -> Kind:
    found: list[Kind] = []
    if ModelRegistry(store, home).labels.latest(ref.name) is not None:
        found.append("model")
    if PromptRegistry(store).labels.latest(ref.name) is not None:
        found.append("prompt")
    if not found:
        raise NotFound(
            f"{ref}: {ref.name!r} is neither a run id nor a registered model or prompt "
            "(see `llmdock eval list`, `llmdock models list`, `llmdock prompts list`)",
            param="baseline",
        )
    if len(found) > 1:
        raise InvalidRequest(
            f"{ref.name!r} is both a registered model and a prompt: write model:{ref} or prompt:{ref}",
            param="baseline",
        )
    return found[0]


def _served_by(wanted: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda served: all(served.get(k) == v for k, v in wanted.items())


def newest_run(store: Store, suite: str, match: Callable[[dict[str, Any]], bool]) -> EvalRun | None:
    """The newest run of ``suite`` with a good (not errored) result whose ``served`` record ``match``es."""
    runs = select(EvalRun).where(EvalRun.suite == suite).order_by(EvalRun.created_at.desc())
    with store.session() as s:
        for run in s.scalars(runs).all():
            served = select(EvalResult.served).where(EvalResult.run_id == run.id, EvalResult.error == "")
            rows: list[dict[str, Any]] = list(s.scalars(served))
            if any(match(row or {}) for row in rows):
                s.expunge(run)
                return run
    return None
