"""Trace policies per model and team, built from ``trace.sampling`` and ``retention.rules`` and checked once.

Sampling keeps a share of the traces whole; the others are stored *sampled out*: the row stays, with every
column the usage, budgets, cost reports, the error filter and the dashboard's charts read (id, time,
operation, model, backend, deployment, status, HTTP status, error, duration, tokens, cost, cache, subject, key,
team, and the attributes: request parameters, prompt template and version, source), and it drops the request
(``input``), the answer (``output``) and the per-stage spans, and is marked ``llmdock.sampled_out: true`` in its
attributes. The request path's counters (``GET /metrics``) see every request before this happens.

The verdict is a hash of the trace id, not a random draw: the same trace gets it in every process (a journal
replayed after a crash decides the same way), and the kept traces are a uniform sample of the matching ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, true

from llmdock.config import Settings
from llmdock.config.trace_policy import TraceMatch
from llmdock.errors import ConfigError
from llmdock.store.models import Trace
from llmdock.store.trace_records import TraceRecord

SAMPLED_OUT = "llmdock.sampled_out"  # the attribute that marks a trace stored without bodies and spans


@dataclass(frozen=True, slots=True)
class Match:
    """A rule's match: the models and teams it names (empty: any)."""

    models: frozenset[str]
    teams: frozenset[str]

    @classmethod
    def of(cls, spec: TraceMatch) -> Match:
        return cls(frozenset(spec.model), frozenset(spec.team))

    def holds(self, model: str, team: str) -> bool:
        return (not self.models or model in self.models) and (not self.teams or team in self.teams)

    def clause(self) -> ColumnElement[bool]:
        """The same test in SQL, over the ``traces`` table."""
        parts = []
        if self.models:
            parts.append(Trace.model.in_(sorted(self.models)))
        if self.teams:
            parts.append(Trace.team_id.in_(sorted(self.teams)))
        return and_(*parts) if parts else true()


def check_models(settings: Settings, section: tuple[str, ...], rules: Sequence[TraceMatch]) -> None:
    """A rule naming a model that is not configured would never match: refused with its ``file:line``."""
    known = settings.all_models()
    for i, rule in enumerate(rules):
        for j, model in enumerate(rule.model):
            if model not in known:
                raise ConfigError(
                    f"model {model!r} is not configured (known: {', '.join(sorted(known))})",
                    where=settings.where((*section, i, "model", j)),
                )


def _rules(settings: Settings, section: tuple[str, ...], specs: Sequence[Any], value: str) -> tuple[Any, ...]:
    """A section's rules, checked, as (match, value) pairs in their order."""
    check_models(settings, section, specs)
    return tuple((Match.of(spec), getattr(spec, value)) for spec in specs)


def _first(rules: tuple[tuple[Match, Any], ...], default: Any, model: str, team: str) -> Any:
    """The value of the first rule that matches, else the default."""
    return next((value for match, value in rules if match.holds(model, team)), default)


@dataclass(frozen=True, slots=True)
class TraceSampling:
    """Which traces keep their bodies and spans (``trace.sample``, ``trace.sampling``)."""

    default: float
    rules: tuple[tuple[Match, float], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> TraceSampling:
        return cls(
            settings.trace.sample, _rules(settings, ("trace", "sampling"), settings.trace.sampling, "share")
        )

    @property
    def keeps_all(self) -> bool:
        return self.default >= 1 and all(share >= 1 for _, share in self.rules)

    def share(self, model: str, team: str) -> float:
        """The share of traces of ``model`` asked by ``team`` that are kept whole."""
        share: float = _first(self.rules, self.default, model, team)
        return share

    def keeps(self, rec: TraceRecord) -> bool:
        share = self.share(rec.model, rec.team_id)
        if share >= 1:
            return True
        digest = hashlib.blake2b(rec.id.encode(), digest_size=8, person=b"llmdock-sample").digest()
        return int.from_bytes(digest) < share * 2**64

    def apply(self, rec: TraceRecord) -> None:
        """Drop the bodies and spans of a trace that is not sampled (in place)."""
        if not self.keeps(rec):
            sample_out(rec)


def sample_out(rec: TraceRecord) -> None:
    rec.input, rec.output, rec.spans = {}, "", []
    rec.attributes = {**rec.attributes, SAMPLED_OUT: True}


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long traces are kept (``retention.traces_days``, ``retention.rules``); None = kept."""

    default: int | None
    rules: tuple[tuple[Match, int | None], ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        rules = _rules(settings, ("retention", "rules"), settings.retention.rules, "traces_days")
        return cls(settings.retention.traces_days, rules)

    @property
    def active(self) -> bool:
        """Whether anything is ever deleted."""
        return self.default is not None or any(days is not None for _, days in self.rules)

    def scopes(self) -> list[tuple[ColumnElement[bool], int | None]]:
        """Each rule's period, then the default's, with the SQL condition of the traces it applies to (its
        match, minus the traces an earlier rule took)."""
        out: list[tuple[ColumnElement[bool], int | None]] = []
        earlier: list[ColumnElement[bool]] = []
        for match, days in [*self.rules, (Match(frozenset(), frozenset()), self.default)]:
            clause = match.clause()
            out.append((and_(clause, *[~e for e in earlier]), days))
            earlier.append(clause)
        return out
