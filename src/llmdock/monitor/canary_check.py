"""What changed between a canary's baseline run and a later run of the same pinned suite.

Five kinds of change, each a :class:`Finding` naming what moved:

- ``answers``: the share of answers (case and repeat) that are exactly the baseline's text, below
  ``min_unchanged``. Temperature 0 and a fixed seed make most hosted models repeat themselves; a new model
  behind the same name does not.
- ``score``: a metric (pass rate, score, each check) whose paired test (``llmdock.evaluate.compare``:
  McNemar on verdicts, Wilcoxon on scores) finds the difference significant at ``alpha``.
- ``latency``: the median latency moved by ``latency_ratio`` or more, either way, and by at least
  ``latency_floor_ms`` (a loaded client, or a cold connection, doubles a fast answer's time on its own).
- ``tokens``: the mean prompt or completion tokens per answer moved by more than ``tokens_change`` (a
  different tokenizer counts the same prompt differently: a strong sign of another model).
- ``served``: what the upstream says answered (its ``model``, ``system_fingerprint``, version headers; see
  ``backends.openai_compat.served_by``) took a value the baseline never saw.

And ``errors``: more cases errored than in the baseline (the first error is quoted).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from llmdock.evaluate.case import CaseResult
from llmdock.evaluate.compare import compare

SERVED_PREFIX = "llmdock.served_"
SERVED_KEYS = ("upstream_model", "system_fingerprint")  # and every ``header.*``


class Thresholds(BaseModel):
    """How much change a canary tolerates before it alerts."""

    model_config = ConfigDict(extra="forbid")

    min_unchanged: float = Field(default=0.9, ge=0, le=1, description="share of answers as in the baseline")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="significance of the paired tests")
    latency_ratio: float = Field(default=2.0, gt=1, description="median latency times (or divided by)")
    latency_floor_ms: float = Field(
        default=500.0, ge=0, description="and moved by at least this much (a busy client wobbles too)"
    )
    tokens_change: float = Field(default=0.2, gt=0, description="relative change of mean tokens per answer")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # answers, score, latency, tokens, served, errors
    message: str


@dataclass(frozen=True, slots=True)
class Verdict:
    unchanged: float | None  # share of paired answers with the baseline's exact text (None: nothing paired)
    paired: int
    findings: list[Finding]


def _short(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= n else flat[: n - 1] + "…")


def _answers(
    base: list[CaseResult], cur: list[CaseResult], th: Thresholds
) -> tuple[float | None, int, list[Finding]]:
    before = {(r.case_id, r.repeat): r.output.text for r in base if not r.error}
    pairs = [
        (key, before[key], r.output.text)
        for r in cur
        if not r.error
        if (key := (r.case_id, r.repeat)) in before
    ]
    if not pairs:
        return None, 0, []
    changed = [(key, old, new) for key, old, new in pairs if old != new]
    share = 1 - len(changed) / len(pairs)
    if share >= th.min_unchanged:
        return share, len(pairs), []
    (case_id, _), old, new = changed[0]
    message = (
        f"{len(pairs) - len(changed)} of {len(pairs)} answers unchanged ({share:.0%}, below "
        f"{th.min_unchanged:.0%}); case {case_id}: {_short(old)} -> {_short(new)}"
    )
    return share, len(pairs), [Finding("answers", message)]


def _scores(base: list[CaseResult], cur: list[CaseResult], th: Thresholds) -> list[Finding]:
    found = []
    for test in compare(base, cur, alpha=th.alpha).tests:
        if test.significant:
            ci = test.delta
            found.append(
                Finding(
                    "score",
                    f"{test.label} {test.mean_a:.3g} -> {test.mean_b:.3g} (delta {ci.mean:+.3g}, 95% CI "
                    f"[{ci.low:+.3g}, {ci.high:+.3g}]; {test.test} p {test.p_value:.2g})",
                )
            )
    return found


def _latency(base: list[CaseResult], cur: list[CaseResult], th: Thresholds) -> list[Finding]:
    a = [r.output.latency_ms for r in base if not r.error]
    b = [r.output.latency_ms for r in cur if not r.error]
    if not a or not b:
        return []
    ma, mb = statistics.median(a), statistics.median(b)
    if ma <= 0 or mb <= 0:
        return []
    ratio = mb / ma
    if 1 / th.latency_ratio < ratio < th.latency_ratio or abs(mb - ma) < th.latency_floor_ms:
        return []
    return [Finding("latency", f"median latency {ma:.0f} ms -> {mb:.0f} ms ({ratio:.2f}x)")]


def _tokens(base: list[CaseResult], cur: list[CaseResult], th: Thresholds) -> list[Finding]:
    found = []
    for kind in ("prompt", "completion"):
        a = [getattr(r.output, f"{kind}_tokens") for r in base if not r.error]
        b = [getattr(r.output, f"{kind}_tokens") for r in cur if not r.error]
        if not a or not b or not statistics.mean(a):
            continue
        ma, mb = statistics.mean(a), statistics.mean(b)
        change = (mb - ma) / ma
        if abs(change) > th.tokens_change:
            found.append(Finding("tokens", f"mean {kind} tokens {ma:.1f} -> {mb:.1f} ({change:+.0%})"))
    return found


def served_values(results: Iterable[CaseResult]) -> dict[str, list[str]]:
    """Each upstream-reported field (``system_fingerprint``, ``upstream_model``, ``header.NAME``) -> the values
    seen, in order of first appearance."""
    seen: dict[str, list[str]] = {}
    for r in results:
        for key, value in r.output.served.items():
            name = key.removeprefix(SERVED_PREFIX)
            if key.startswith(SERVED_PREFIX) and (name in SERVED_KEYS or name.startswith("header.")):
                values = seen.setdefault(name, [])
                if str(value) not in values:
                    values.append(str(value))
    return seen


def _served(base: list[CaseResult], cur: list[CaseResult]) -> list[Finding]:
    before, now = served_values(base), served_values(cur)
    found = []
    for name in sorted(set(before) | set(now)):
        new = [v for v in now.get(name, []) if v not in before.get(name, [])]
        gone = not now.get(name) and bool(before.get(name))
        if new or gone:
            old = ", ".join(before.get(name, [])) or "(none)"
            found.append(Finding("served", f"{name} {old} -> {', '.join(now.get(name, [])) or '(none)'}"))
    return found


def _errors(base: list[CaseResult], cur: list[CaseResult]) -> list[Finding]:
    failed = [r for r in cur if r.error]
    before = sum(1 for r in base if r.error)
    if len(failed) <= before:
        return []
    return [
        Finding(
            "errors",
            f"{len(failed)} of {len(cur)} answers errored (baseline: {before}); case {failed[0].case_id}: "
            f"{failed[0].error[:160]}",
        )
    ]


def check(base: list[CaseResult], cur: list[CaseResult], th: Thresholds) -> Verdict:
    """Everything that moved from the baseline run ``base`` to the run ``cur`` beyond ``th``."""
    share, paired, findings = _answers(base, cur, th)
    findings += _scores(base, cur, th)
    findings += _latency(base, cur, th) + _tokens(base, cur, th) + _served(base, cur) + _errors(base, cur)
    return Verdict(share, paired, findings)
