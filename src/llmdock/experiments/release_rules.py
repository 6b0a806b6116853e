"""The rules that promote or roll back a canary release, read from what its two variants did.

A rule is conditions joined by ``and``, alternatives joined by ``or`` (``and`` binds tighter)::

    requests >= 200 and not worse
    worse or requests >= 20 and error_rate > 0.2

A condition is ``FACT OP NUMBER`` on the challenger (``OP``: ``<``, ``<=``, ``>``, ``>=``), or a comparison
with the stable version by the experiments' sequential test (``experiments.sequential``: safe to evaluate
every few seconds): ``worse`` (significantly worse on any measure), ``worse:MEASURE``, ``better:MEASURE``,
each optionally preceded by ``not``. Facts: ``requests``, ``minutes`` (since the release started),
``error_rate``, ``block_rate`` (guard blocks), ``p50_ms``, ``p95_ms``, ``thumbs_up`` and ``score.NAME`` (means of
feedback). Measures: ``error_rate``, ``block_rate``, ``latency``, ``thumbs_up``, ``score.NAME``. A fact that
has no value yet (no feedback) makes its condition false.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from llmdock.errors import InvalidRequest
from llmdock.experiments.results import VariantStats
from llmdock.experiments.sequential import Difference, compare_means, compare_moments, compare_rates

DEFAULT_PROMOTE = "requests >= 200 and not worse"
DEFAULT_ROLLBACK = "worse or requests >= 20 and error_rate > 0.2"
FACTS = ("requests", "minutes", "error_rate", "block_rate", "p50_ms", "p95_ms", "thumbs_up")
MEASURES = ("error_rate", "block_rate", "latency", "thumbs_up")
LOWER_IS_BETTER = ("error_rate", "block_rate", "latency")
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}  # fmt: skip
COMPARE_RE = re.compile(
    r"^(?P<fact>[a-z][a-z0-9_]*|score\.[\w.-]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[0-9.]+(?:e-?\d+)?)$"
)
TEST_RE = re.compile(r"^(?P<not>not\s+)?(?P<kind>worse|better)(?::(?P<measure>[a-z_]+|score\.[\w.-]+))?$")


@dataclass(frozen=True, slots=True)
class Condition:
    text: str
    fact: str = ""  # FACT OP NUMBER
    op: str = ""
    value: float = 0.0
    kind: str = ""  # worse | better
    measure: str = ""  # "" = any measure
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    clauses: tuple[tuple[Condition, ...], ...]  # or of ands


def _condition(text: str, where: str) -> Condition:
    if m := COMPARE_RE.match(text):
        if m["fact"] not in FACTS and not m["fact"].startswith("score."):
            raise InvalidRequest(
                f"{where}: unknown fact {m['fact']!r} (known: {', '.join(FACTS)}, score.NAME)"
            )
        return Condition(text, fact=m["fact"], op=m["op"], value=float(m["value"]))
    if m := TEST_RE.match(text):
        measure = m["measure"] or ""
        if measure and measure not in MEASURES and not measure.startswith("score."):
            raise InvalidRequest(
                f"{where}: unknown measure {measure!r} (known: {', '.join(MEASURES)}, score.NAME)"
            )
        if m["kind"] == "better" and not measure:
            raise InvalidRequest(f"{where}: say better on what, e.g. better:thumbs_up")
        return Condition(text, kind=m["kind"], measure=measure, negated=bool(m["not"]))
    raise InvalidRequest(
        f"{where}: {text!r} is neither FACT OP NUMBER (e.g. error_rate > 0.05) nor [not] worse[:MEASURE] / "
        "better:MEASURE"
    )


def parse_rule(text: str, option: str) -> Rule:
    """``--promote-when`` / ``--rollback-when`` text → a rule; a clear error naming the option otherwise."""
    text = " ".join(text.split())
    if not text:
        raise InvalidRequest(f"{option}: the rule is empty", param=option)
    try:
        clauses = tuple(
            tuple(_condition(c.strip(), f"{option} {text!r}") for c in re.split(r"\s+and\s+", alt))
            for alt in re.split(r"\s+or\s+", text)
        )
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param=option) from None
    return Rule(text, clauses)


@dataclass
class Evidence:
    """What the rules read: the challenger's facts and each measure's difference (challenger - stable)."""

    facts: dict[str, float]
    differences: dict[str, Difference] = field(default_factory=dict)

    def worse(self, measure: str) -> bool:
        return any(self._direction(m) < 0 for m in self._measures(measure))

    def better(self, measure: str) -> bool:
        return any(self._direction(m) > 0 for m in self._measures(measure))

    def _measures(self, measure: str) -> list[str]:
        return [measure] if measure else list(self.differences)

    def _direction(self, measure: str) -> int:
        """+1 significantly better, -1 significantly worse, 0 neither (or not measured yet)."""
        d = self.differences.get(measure)
        if d is None or not d.significant or d.delta == 0:
            return 0
        up = 1 if d.delta > 0 else -1
        return -up if measure in LOWER_IS_BETTER else up


def evidence(stable: VariantStats, challenger: VariantStats, minutes: float) -> Evidence:
    """The facts and comparisons of one look at a release."""
    c = challenger
    facts = {
        "requests": float(c.n),
        "minutes": minutes,
        "error_rate": c.rate(c.errors),
        "block_rate": c.rate(c.blocked),
        "p50_ms": c.p50_ms,
        "p95_ms": c.p95_ms,
    }
    thumbs = c.scores.get("thumbs", [])
    facts["thumbs_up"] = sum(thumbs) / len(thumbs) if thumbs else math.nan
    for name, values in c.scores.items():
        if name != "thumbs" and values:
            facts[f"score.{name}"] = sum(values) / len(values)
    s, ts = stable, stable.scores.get("thumbs", [])
    found = {
        "error_rate": compare_rates("error rate", s.errors, s.n, c.errors, c.n),
        "block_rate": compare_rates("guard-block rate", s.blocked, s.n, c.blocked, c.n),
        "latency": compare_moments("latency ms", s.latency.moments, c.latency.moments),
        "thumbs_up": compare_rates("thumbs-up rate", int(sum(ts)), len(ts), int(sum(thumbs)), len(thumbs)),
    }
    for name in sorted((set(s.scores) & set(c.scores)) - {"thumbs"}):
        found[f"score.{name}"] = compare_means(name, s.scores[name], c.scores[name])
    return Evidence(facts, {k: d for k, d in found.items() if d is not None})


def holds(rule: Rule, ev: Evidence) -> str:
    """The alternative of ``rule`` that holds (its text, for the audit and the status), else ""."""
    for clause in rule.clauses:
        if all(_holds(c, ev) for c in clause):
            return " and ".join(c.text for c in clause)
    return ""


def _holds(c: Condition, ev: Evidence) -> bool:
    if c.kind:
        found = ev.worse(c.measure) if c.kind == "worse" else ev.better(c.measure)
        return found != c.negated
    value = ev.facts.get(c.fact, math.nan)
    return not math.isnan(value) and OPS[c.op](value, c.value)
