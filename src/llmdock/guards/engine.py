"""Running a policy's detectors over a request's texts, and turning their verdicts into actions and spans.

Each detector runs on each text its policy covers; its score against the policy's threshold decides
whether it is flagged. A detector that raises, or outlives its ``timeout_ms``, fails closed (counts as
flagged with score 1) or open (counts as clean) as its policy says, and the span says which. Every
detector leaves one span on the trace (``guard_in.injection`` …) with its score, threshold, action, the
layer that fired and the offending spans (offsets and labels, never the text itself).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from llmdock.errors import GuardBlocked
from llmdock.guards.base import Finding, GuardText, Verdict
from llmdock.guards.policy import Entry
from llmdock.pipeline.context import RequestContext
from llmdock.store.trace_records import SpanRecord

log = logging.getLogger("llmdock.guards")
MAX_FINDINGS_ON_SPAN = 20


@dataclass(slots=True)
class Outcome:
    """One detector's result over the texts it checked: the worst verdict, and the flagged ones per text."""

    entry: Entry
    verdict: Verdict
    flagged: bool
    hits: list[tuple[int, Verdict]] = field(default_factory=list)  # (text index, verdict) when flagged
    error: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration_ms: float = 0.0

    def body(self) -> dict[str, Any]:
        """The verdict as clients see it in a content_policy error."""
        return {
            "detector": self.entry.name,
            "score": round(self.verdict.score, 4),
            "threshold": self.entry.policy.threshold,
            "layer": self.verdict.layer,
            "spans": [
                {"text": i, "start": f.start, "end": f.end, "label": f.label}
                for i, v in self.hits
                for f in v.findings
            ][:MAX_FINDINGS_ON_SPAN],
            **({"error": self.error} if self.error else {}),
        }


async def run_detector(entry: Entry, item: GuardText) -> tuple[Verdict, str]:
    """One detector on one text, bounded by its timeout; failures become fail-open/closed verdicts."""
    timeout_s = entry.policy.timeout_ms / 1000
    t0 = time.perf_counter()
    error = ""
    try:
        if entry.detector.awaits:
            verdict = await asyncio.wait_for(entry.detector.detect(item), timeout_s)
        else:
            verdict = await entry.detector.detect(item)
            if time.perf_counter() - t0 > timeout_s:
                error = f"timeout: took {(time.perf_counter() - t0) * 1000:.0f} ms"
    except TimeoutError:
        error = f"timeout after {entry.policy.timeout_ms:.0f} ms"
    except Exception as exc:  # a broken detector must not take the request down: its policy decides
        log.exception("guard detector %s failed", entry.name)
        error = f"{type(exc).__name__}: {exc}"
    if error:
        closed = entry.policy.on_error == "closed"
        return Verdict(1.0 if closed else 0.0, "fail-closed" if closed else "fail-open"), error
    return verdict, ""


async def check(entries: list[Entry], items: list[GuardText]) -> list[Outcome]:
    outcomes = []
    for entry in entries:
        outcome = Outcome(entry, Verdict(0.0), False)
        t0 = time.perf_counter()
        for i, item in enumerate(items):
            if item.role not in entry.policy.roles or not item.text:
                continue
            verdict, error = await run_detector(entry, item)
            if error:
                outcome.error = error
            if verdict.score >= outcome.verdict.score:
                outcome.verdict = verdict
            if verdict.score >= entry.policy.threshold:
                outcome.flagged = True
                outcome.hits.append((i, verdict))
        outcome.duration_ms = (time.perf_counter() - t0) * 1000
        outcomes.append(outcome)
    return outcomes


def record(ctx: RequestContext, stage: str, outcomes: list[Outcome], applied: dict[str, str]) -> list[str]:
    """One span per detector, and the flagged ones on the trace's attributes; returns the flagged ones."""
    flagged = []
    for o in outcomes:
        attrs: dict[str, Any] = {
            "score": round(o.verdict.score, 4),
            "threshold": o.entry.policy.threshold,
            "flagged": o.flagged,
            "action": applied.get(o.entry.name, "none"),
        }
        if o.verdict.layer:
            attrs["layer"] = o.verdict.layer
        if o.flagged:
            attrs["findings"] = o.body()["spans"]
            flagged.append(f"{o.entry.name}:{attrs['action']}")
        if o.error:
            attrs["error"] = o.error
            attrs["fail"] = o.entry.policy.on_error
        status = "error" if o.error else "ok"
        ctx.spans.append(SpanRecord(f"{stage}.{o.entry.name}", o.started_at, o.duration_ms, status, attrs))
    if flagged:
        ctx.attributes.setdefault("llmdock.guard.flagged", []).extend(f"{stage}.{f}" for f in flagged)
    return flagged


def decide(outcomes: list[Outcome]) -> tuple[Outcome | None, list[Outcome], dict[str, str]]:
    """The first blocking outcome, the redacting ones, and the action applied per detector."""
    blocking = None
    redacting = []
    applied: dict[str, str] = {}
    for o in outcomes:
        if not o.flagged:
            continue
        action = o.entry.policy.action
        applied[o.entry.name] = action
        if action == "block" and blocking is None:
            blocking = o
        elif action == "redact":
            redacting.append(o)
    return blocking, redacting, applied


def blocked_error(outcome: Outcome, template: str, direction: str) -> GuardBlocked:
    body = outcome.body()
    try:
        message = template.format(
            detector=outcome.entry.name, score=outcome.verdict.score, direction=direction
        )
    except (KeyError, IndexError, ValueError):
        message = template
    return GuardBlocked(message, param="messages" if direction == "input" else None, extra={"verdict": body})


def redactions(outcomes: list[Outcome], count: int) -> list[list[Finding]]:
    """Per text, the spans to redact (a flagged verdict without spans redacts its whole text)."""
    per_text: list[list[Finding]] = [[] for _ in range(count)]
    for o in outcomes:
        for i, verdict in o.hits:
            per_text[i].extend(verdict.findings or [Finding(0, 1 << 30, o.entry.name)])
    return per_text


def redact(text: str, findings: list[Finding], template: str) -> str:
    """``text`` with each finding replaced by the template (overlapping findings merge into one)."""
    spans = sorted((max(0, f.start), min(len(text), f.end), f.label) for f in findings)
    merged: list[list[Any]] = []
    for start, end, label in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, label])
    out = []
    pos = 0
    for start, end, label in merged:
        out.append(text[pos:start])
        out.append(template.replace("{label}", label.upper()))
        pos = end
    out.append(text[pos:])
    return "".join(out)
