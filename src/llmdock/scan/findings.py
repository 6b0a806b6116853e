"""From scored probes to findings: per target and category, how many probes found something, how many the
guards stopped, and the failing examples, each with a one-line reproduction (``llmdock chat …``).

A probe's result is one of: ``resisted`` (its rule found nothing), ``found`` (a finding), ``blocked`` (a
guard refused the request or the answer: the error carries the configured block message), ``errored``
(anything else that kept the target from answering). Group categories (bias, robustness) count their
group verdicts (:mod:`llmdock.scan.groups`); a bias probe whose own answer is toxic is a finding too.
"""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

from llmdock.evaluate import Case, CaseResult
from llmdock.scan.judges import Judgement
from llmdock.scan.probes import CATEGORIES, Severity

Status = Literal["resisted", "found", "blocked", "errored"]
MAX_EXAMPLES = 5
SEVERITY_ORDER: tuple[Severity, ...] = ("critical", "high", "medium", "low")


@dataclass(frozen=True, slots=True)
class Example:
    case_id: str
    prompt: str  # the probe's messages as text, role by role
    output: str
    why: str
    reproduce: str


@dataclass(slots=True)
class Finding:
    """One category's failures on one target."""

    target: str
    category: str
    severity: Severity
    failed: int
    probes: int
    examples: list[Example] = field(default_factory=list)
    summary: str = ""  # a group-level test's verdict (the sentiment of a bias axis), when it is one

    @property
    def rate(self) -> float:
        return self.failed / self.probes if self.probes else 0.0


@dataclass(slots=True)
class Tally:
    """One category on one target: how its probes ended."""

    target: str
    category: str
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("resisted", "found", "blocked", "errored"), 0)
    )

    @property
    def judged(self) -> int:
        return self.counts["resisted"] + self.counts["found"] + self.counts["blocked"]

    @property
    def found_rate(self) -> float:
        return self.counts["found"] / self.judged if self.judged else 0.0


def block_pattern(template: str) -> re.Pattern[str]:
    """A pattern for the guards' block message (``guards.block_message``) and the structured-output one."""
    parts = re.split(r"(\{[^}]*\})", template)
    body = "".join(r"\w+|[\d.]+" if p.startswith("{") else re.escape(p) for p in parts if p)
    return re.compile(rf"(?:{body})|Blocked: redacting the answer")


def reproduce(case: Case, options: list[str]) -> str:
    """``llmdock chat OPTIONS …`` asking what the probe asked: its system prompt, its other turns
    (``--turn role:text``), then its last user message as the question."""
    messages = list(case.messages or []) + ([{"role": "user", "content": case.input}] if case.input else [])
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    args = ["llmdock", "chat", *options]
    for m in messages[:last] + messages[last + 1 :]:
        if m["role"] == "system":
            args += ["--system", str(m["content"])]
        else:
            args += ["--turn", f"{m['role']}:{m['content']}"]
    return shlex.join([*args, str(messages[last]["content"])])


def prompt_text(case: Case) -> str:
    return "\n\n".join(f"[{m['role']}] {m['content']}" for m in case.messages or []) or (case.input or "")


def status_of(
    case: Case, result: CaseResult, group: Judgement | None, blocked: re.Pattern[str]
) -> tuple[Status, str]:
    """How a probe ended. In a group only the group's verdict counts: one wrong or toxic-looking answer is
    no sign of bias or fragility, a difference between the group's answers is."""
    if result.error:
        return ("blocked" if blocked.search(result.error) else "errored"), result.error
    if case.metadata.get("group"):
        return ("found", group.why) if group is not None and group.found else ("resisted", "")
    own = next(iter(result.scores.values()), None)
    if own is not None and not own.passed:
        return "found", own.reason
    return "resisted", ""


def is_reference(case: Case) -> bool:
    """A group's first member: what the others are compared with, not a probe counted by itself."""
    return bool(case.metadata.get("reference"))


def aggregate(
    cases: dict[str, Case],
    results: list[CaseResult],
    groups: dict[tuple[str, str], Judgement],
    blocked: re.Pattern[str],
    repro: dict[str, list[str]],
) -> tuple[list[Tally], list[Finding]]:
    """Per target and category: the tally, and a finding with up to :data:`MAX_EXAMPLES` examples when any
    probe found something. ``repro`` gives each target's ``llmdock chat`` options."""
    tallies: dict[tuple[str, str], Tally] = {}
    examples: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for r in sorted(results, key=lambda r: (r.target, r.case_id)):
        case = cases[r.case_id]
        category = case.metadata["category"]
        if is_reference(case):
            continue
        tally = tallies.setdefault((r.target, category), Tally(r.target, category))
        status, why = status_of(case, r, groups.get((r.target, r.case_id)), blocked)
        tally.counts[status] += 1
        if status == "found":
            examples[(r.target, category)].append(
                Example(r.case_id, prompt_text(case), r.output.text, why, reproduce(case, repro[r.target]))
            )
    findings = [
        Finding(
            t.target,
            t.category,
            CATEGORIES[t.category].severity,
            t.counts["found"],
            t.judged,
            examples[(t.target, t.category)][:MAX_EXAMPLES],
        )
        for t in tallies.values()
        if t.counts["found"]
    ]
    order = list(CATEGORIES)
    return sorted(tallies.values(), key=lambda t: (order.index(t.category), t.target)), ordered(findings)


def ordered(findings: list[Finding]) -> list[Finding]:
    """Most severe first, then the highest share of probes that found something."""
    return sorted(findings, key=lambda f: (SEVERITY_ORDER.index(f.severity), -f.rate, f.category, f.target))
