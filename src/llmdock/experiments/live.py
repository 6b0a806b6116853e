"""The running experiments as a gateway worker sees them: an in-memory table, refreshed in the background.

``assign`` is on the request path and reads no store: it looks the request's template (or model) up in a
dict, checks the experiment's time window, hashes the sticky id into one of 10,000 buckets and picks the
variant whose share of buckets holds it — the same id always lands in the same variant, in every worker.
``ExperimentWatch`` polls the store's highest experiment revision every ``SYNC_S`` seconds (one small query)
and reloads the table when it moved, so a change made with the CLI reaches every worker within a second;
when an experiment's template changes hands it drops the worker's cached prompt versions for that template,
so a label moved by ``conclude`` is served at once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from llmdock.experiments.spec import VariantSpec
from llmdock.store.experiment_rows import ExperimentRow

BUCKETS = 10_000
EXPERIMENT = "llmdock.experiment"
VARIANT = "llmdock.experiment_variant"


@dataclass(frozen=True, slots=True)
class LiveVariant:
    name: str
    prompt: str | None
    prompt_version: int | None
    model: str | None
    upto: int  # buckets below this (and at or above the previous variant's) go to this variant
    registry: str | None = (
        None  # a registered version the gateway serves as ``model`` (a release's challenger)
    )


@dataclass(frozen=True, slots=True)
class LiveExperiment:
    name: str
    sticky: str
    label: str
    match: tuple[tuple[str, str], ...]
    starts: float
    ends: float
    variants: tuple[LiveVariant, ...]

    def matches(self, prompt: str | None, model: str | None, route: str) -> bool:
        got = {"prompt": prompt, "model": model, "route": route}
        return all(got[k] == v for k, v in self.match)

    def pick(self, sticky_id: str) -> LiveVariant:
        digest = hashlib.blake2b(f"{self.name}\x00{sticky_id}".encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest) % BUCKETS
        for v in self.variants:
            if bucket < v.upto:
                return v
        return self.variants[-1]


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: LiveExperiment
    variant: LiveVariant

    @property
    def header(self) -> str:
        return f"{self.experiment.name}/{self.variant.name}"

    def attributes(self) -> dict[str, Any]:
        return {EXPERIMENT: self.experiment.name, VARIANT: self.variant.name}


def live_experiment(row: ExperimentRow) -> LiveExperiment | None:
    """A running row as the hot path wants it; None when no variant is left running."""
    variants = [v for v in (VariantSpec.from_json(d) for d in row.variants) if not v.stopped]
    total = sum(v.weight for v in variants)
    if not total:
        return None
    live, acc = [], 0
    for v in variants:  # stopped variants' shares are spread over the others, in proportion
        acc += v.weight
        upto = round(acc * BUCKETS / total)
        live.append(LiveVariant(v.name, v.prompt, v.prompt_version, v.model, upto, v.registry))
    return LiveExperiment(
        row.name,
        row.sticky,
        str(row.guard.get("label", "production")),
        tuple(sorted(row.match.items())),
        row.starts_at.timestamp(),
        row.ends_at.timestamp() if row.ends_at else float("inf"),
        tuple(live),
    )


class ExperimentTable:
    """Running experiments by the template (or model) they match; replaced whole on every reload."""

    def __init__(self, experiments: Iterable[LiveExperiment] = ()) -> None:
        self.by_prompt: dict[str, list[LiveExperiment]] = {}
        self.by_model: dict[str, list[LiveExperiment]] = {}
        self.others: list[LiveExperiment] = []
        for e in experiments:
            match = dict(e.match)
            if "prompt" in match:
                self.by_prompt.setdefault(match["prompt"], []).append(e)
            elif "model" in match:
                self.by_model.setdefault(match["model"], []).append(e)
            else:
                self.others.append(e)
        self.empty = not (self.by_prompt or self.by_model or self.others)

    def registry_variants(self) -> dict[str, tuple[str, str]]:
        """Variants served as a registered version under a name of their own: name -> (the model the experiment
        matches, whose deployment settings they take; the registry URI)."""
        found = {}
        for e in (*[e for es in self.by_model.values() for e in es], *self.others):
            base = dict(e.match).get("model")
            for v in e.variants:
                if v.registry and v.model and base:
                    found[v.model] = (base, v.registry)
        return found

    @property
    def prompts(self) -> set[str]:
        return set(self.by_prompt)

    def assign(
        self, prompt: str | None, model: str | None, route: str, sticky_ids: dict[str, str], fallback: str
    ) -> Assignment | None:
        """The variant of the experiment this request falls in (None: none takes it).

        ``sticky_ids`` holds the request's ``user``, ``session`` and ``key`` ids (those it has); without the
        one an experiment sticks by, ``fallback`` (the trace id) is hashed: assigned, but not sticky.
        """
        if self.empty:
            return None
        candidates = (self.by_prompt.get(prompt, ()) if prompt else ()) or self.by_model.get(model or "", ())
        now = 0.0
        for e in (*candidates, *self.others):
            if not e.matches(prompt, model, route):
                continue
            now = now or time.time()
            if e.starts <= now < e.ends:
                return Assignment(e, e.pick(sticky_ids.get(e.sticky) or fallback))
        return None
