"""Online evaluation's rules, built: which stored traces a rule takes, whether it samples one, and its scores.

A rule (``online_eval.rules``) names the traffic it scores (models, routes, prompt templates), the share of it
(``sample``) and its metrics: checks of the evaluation package's registry (``llm-rubric`` judges, ``regex``,
``sentiment``, ``guard`` detectors…), built once at start. Live traffic has no reference answer, so a metric
that compares with one must be given its ``value``; one that cannot be is refused at start, with the setting's
``file:line``.

Sampling is a hash of the rule's name and the trace id, not a random draw: the same trace gets the same verdict
wherever and whenever it is asked, so a restart cannot sample a trace twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmdock.config import Settings
from llmdock.config.monitor_settings import OnlineEvalRule
from llmdock.errors import ConfigError
from llmdock.evaluate.case import Case, Check, Metric, MetricError, MetricFactory, Output
from llmdock.monitor.trace_text import last_user_text
from llmdock.pipeline.env import StageEnv

REASON_CHARS = 2000
SOURCE = "evaluator"  # the feedback source of every online-evaluation score


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the rules need to know of a stored trace to choose it."""

    id: str
    created_at: datetime
    model: str
    route: str  # chat, completion, responses (the API it came in through)
    prompt: str  # the prompt template's name, "" when none
    prompt_version: str
    prompt_label: str

    @classmethod
    def of(
        cls, id: str, created_at: datetime, model: str, operation: str, attrs: dict[str, Any] | None
    ) -> Candidate:
        a = attrs or {}
        return cls(
            id,
            created_at,
            model,
            str(a.get("llmdock.api") or operation),
            str(a.get("llmdock.prompt_template") or ""),
            str(a.get("llmdock.prompt_version") or ""),
            str(a.get("llmdock.prompt_label") or ""),
        )


def sampled(rule: str, trace_id: str, share: float) -> bool:
    """Whether ``rule`` scores the trace: a fixed verdict per (rule, trace), true for ``share`` of the ids."""
    digest = hashlib.blake2b(f"{rule}\0{trace_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) < share * 2**64


def _prompt_matches(wanted: str, c: Candidate) -> bool:
    if "@" in wanted:
        name, _, label = wanted.partition("@")
        return c.prompt == name and c.prompt_label == label
    if "/" in wanted:
        name, _, version = wanted.partition("/")
        return c.prompt == name and c.prompt_version == version
    return c.prompt == wanted


@dataclass(frozen=True, slots=True)
class ScoringRule:
    """A rule with its metrics built: ``takes`` a candidate, ``score``s a trace's answer."""

    spec: OnlineEvalRule
    metrics: tuple[tuple[str, Metric], ...]  # (score name, metric)

    @property
    def name(self) -> str:
        return self.spec.name

    def matches(self, c: Candidate) -> bool:
        s = self.spec
        return (
            (not s.models or c.model in s.models)
            and (not s.routes or c.route in s.routes)
            and (not s.prompts or any(_prompt_matches(p, c) for p in s.prompts))
        )

    def takes(self, c: Candidate) -> bool:
        return self.matches(c) and sampled(self.name, c.id, self.spec.sample)

    async def score(self, case: Case, output: Output) -> tuple[list[tuple[str, float, str]], list[str]]:
        """Each metric's (name, value, reason), and what failed (``name: why``): one metric failing does not
        lose the others' scores."""
        scores, errors = [], []
        for name, metric in self.metrics:
            try:
                s = await metric.score(case, output)
            except MetricError as exc:
                errors.append(f"{name}: {exc}")
                continue
            scores.append((name, float(s.value), s.reason[:REASON_CHARS]))
        return scores, errors


def build_rules(
    settings: Settings, env: StageEnv, factories: Mapping[str, MetricFactory]
) -> list[ScoringRule]:
    """Every rule with its metrics built; an unknown metric, a bad value, or a metric that needs a reference
    answer it is not given stops here with the setting's ``file:line: online_eval.rules.N.metrics.M…``."""
    rules = []
    for i, spec in enumerate(settings.online_eval.rules):
        built = []
        for j, m in enumerate(spec.metrics):
            where = settings.where(("online_eval", "rules", i, "metrics", j, "type"))
            factory = factories.get(m.type)
            if factory is None:
                known = ", ".join(sorted(factories))
                raise ConfigError(f"unknown metric {m.type!r} (known: {known})", where=where)
            if factory.needs_reference and m.value is None:
                raise ConfigError(
                    f"{m.type} compares with a reference answer, and live traffic has none: give it a "
                    "`value` or score with a reference-free metric (llm-rubric, regex, sentiment, guard…)",
                    where=where,
                )
            check = Check(type=m.type, value=m.value, threshold=m.threshold, name=m.label, where=where)
            try:
                built.append((m.label, factory(check, env)))
            except MetricError as exc:
                raise ConfigError(str(exc), where=where) from None
        rules.append(ScoringRule(spec, tuple(built)))
    return rules


def case_of(trace_id: str, inputs: dict[str, Any], output: str, facts: dict[str, Any]) -> tuple[Case, Output]:
    """A stored trace as the evaluation package's (case, output): the question is the last user message (the
    whole conversation is kept for metrics that read it); there is no expected answer."""
    messages = inputs.get("messages")
    case = Case(
        id=trace_id,
        input=last_user_text(inputs),
        messages=messages if isinstance(messages, list) else None,
        where=f"trace {trace_id}",
    )
    out = Output(
        text=output,
        latency_ms=float(facts.get("duration_ms") or 0.0),
        prompt_tokens=int(facts.get("prompt_tokens") or 0),
        completion_tokens=int(facts.get("completion_tokens") or 0),
        cost=float(facts.get("cost") or 0.0),
        trace_id=trace_id,
    )
    return case, out
