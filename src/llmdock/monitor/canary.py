"""Provider canaries: a pinned evaluation suite asked of a hosted model on a schedule, compared with its first
run, alerting when the model behind the name changed (docs/monitoring.md#provider-canaries).

A canary names a configured model (any backend; the point is hosted OpenAI-compatible ones), a suite file
pinned by its sha256 (the suite and its dataset may not change under a canary: a changed file stops the run
with the way out), a schedule (a ``llmdock.jobs`` schedule running the ``canary.run`` step, so it fires once
per slot however many schedulers run) and the alert channels it notifies (``alerts.channels``).

Each run asks the suite's cases of the model with temperature 0 and the suite's seed, through preprocess,
generate and postprocess only (no cache, guards or grounding: what is seen is the provider), and stores an
evaluation run. The first run becomes the baseline (one conditional UPDATE: of two overlapping first runs,
one); each later one is compared with it
(``canary_check.check``). A run that finds a change opens a firing (``canary_runs.firing_id``) and notifies;
later runs finding the same kinds of change only update it, a run finding a new kind notifies again, and a run
finding none resolves it. ``rebaseline`` makes a run the new baseline (the provider's change was accepted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from llmdock.config import Settings
from llmdock.config.monitor_settings import parse_duration
from llmdock.errors import ConfigError, InvalidRequest, NotFound
from llmdock.evaluate.case import MetricFactory
from llmdock.evaluate.results import load_results
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import Suite, TargetSpec, load_suite
from llmdock.evaluate.targets import Serving
from llmdock.monitor.canary_alert import claim_baseline, record_run, resolve_open
from llmdock.monitor.canary_check import Thresholds, Verdict, check
from llmdock.monitor.notify import Notice
from llmdock.store.canary_rows import Canary, CanaryRun
from llmdock.store.engine import Store

NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
STAGES = ["preprocess", "generate", "postprocess"]


def every_cron(every: str) -> str:
    """A cron expression firing every ``every`` (``30s``, ``15m``, ``6h``, ``1d``): the interval must divide a
    minute, an hour or a day, else say so (give ``--cron``)."""
    seconds = int(parse_duration(every))
    if seconds < 60 and 60 % seconds == 0:
        return f"* * * * * */{seconds}"
    if seconds % 60 == 0 and seconds < 3600 and 3600 % seconds == 0:
        return f"*/{seconds // 60} * * * *"
    if seconds % 3600 == 0 and seconds < 86400 and 86400 % seconds == 0:
        return f"0 */{seconds // 3600} * * *"
    if seconds == 86400:
        return "0 0 * * *"
    raise ValueError(f"{every!r} does not divide a minute, an hour or a day: give a cron expression (--cron)")


def check_definition(
    settings: Settings, name: str, target: str, suite_path: Path, channels: list[str]
) -> Suite:
    """The canary's name, model, suite and channels checked before it is stored: the loaded suite."""
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"{name!r}: lower-case letters, digits, '.', '_' and '-' (at most 100)", where="NAME"
        )
    if target not in settings.models:
        raise ConfigError(
            f"unknown model {target!r} (configured: {', '.join(sorted(settings.models))})", where="--target"
        )
    unknown = [c for c in channels if c not in settings.alerts.channels]
    if unknown:
        known = ", ".join(sorted(settings.alerts.channels)) or "none configured"
        raise ConfigError(f"unknown channel {unknown[0]!r} (alerts.channels: {known})", where="--channel")
    return load_suite(suite_path)


def add_canary(store: Store, canary: Canary) -> Canary:
    with store.session() as s, s.begin():
        if s.get(Canary, canary.name) is not None:
            raise InvalidRequest(f"a canary {canary.name!r} exists: remove it first", param="name")
        s.add(canary)
    return canary


def get_canary(store: Store, name: str) -> Canary:
    with store.session() as s:
        row = s.get(Canary, name)
        if row is None:
            raise NotFound(f"no canary {name!r} (llmdock canary list)")
        s.expunge(row)
        return row


def list_canaries(store: Store) -> list[tuple[Canary, CanaryRun | None]]:
    """Every canary with its newest run."""
    with store.session() as s:
        out = []
        for row in s.scalars(select(Canary).order_by(Canary.name)):
            last = s.scalars(
                select(CanaryRun).where(CanaryRun.canary == row.name).order_by(CanaryRun.id.desc()).limit(1)
            ).first()
            out.append((row, last))
        s.expunge_all()
        return out


def canary_runs(store: Store, name: str, limit: int = 20) -> list[CanaryRun]:
    with store.session() as s:
        q = select(CanaryRun).where(CanaryRun.canary == name).order_by(CanaryRun.id.desc()).limit(limit)
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows


def remove_canary(store: Store, name: str, now: datetime) -> Canary:
    """Delete the canary (its runs and firings stay, its open firing resolved); the caller removes its
    schedule."""
    with store.session() as s, s.begin():
        row = s.get(Canary, name)
        if row is None:
            raise NotFound(f"no canary {name!r} (llmdock canary list)")
        s.delete(row)
    resolve_open(store, name, now)
    return row


def pinned_suite(canary: Canary) -> Suite:
    """The canary's suite, refused when it changed since the canary was added; its targets replaced by the
    canary's model at temperature 0 (the suite's seed), through preprocess, generate and postprocess."""
    suite = load_suite(Path(canary.suite_path))
    if suite.sha256 != canary.suite_sha256:
        raise ConfigError(
            f"the suite or its dataset changed since canary {canary.name!r} was added: answers could no longer "
            "be compared with the baseline; remove the canary and add it again (a new baseline)",
            where=canary.suite_path,
        )
    target = TargetSpec(name=canary.target, model=canary.target, pipeline=STAGES, params={"temperature": 0})
    spec = suite.spec.model_copy(update={"targets": [target], "name": f"canary-{canary.name}"})
    return dataclasses.replace(suite, spec=spec)


@dataclass(frozen=True, slots=True)
class CanaryOutcome:
    run: CanaryRun
    verdict: Verdict | None  # None for the baseline run
    notice: Notice | None  # what to send now (``canary_alert.send``), if anything


async def run_canary(
    store: Store,
    canary: Canary,
    metrics: Mapping[str, MetricFactory],
    serving: Serving,
    *,
    show_progress: bool = False,
    by: str = "",
    rebaseline: bool = False,
) -> CanaryOutcome:
    """Ask the pinned suite now, compare with the baseline and store the run (the caller sends its alert)."""
    suite = pinned_suite(canary)
    started = datetime.now(UTC)
    outcome = await run(suite, store, metrics, serving, show_progress=show_progress, by=by)
    results = await asyncio.to_thread(load_results, store, outcome.run_id)
    if (rebaseline or not canary.baseline_run) and all(r.error for r in results):
        raise InvalidRequest(  # nothing to compare later runs with
            f"canary {canary.name}: every case errored ({results[0].error}); no baseline taken"
        )
    if not (canary.baseline_run or rebaseline) and not await asyncio.to_thread(
        claim_baseline, store, canary.name, outcome.run_id
    ):  # an overlapping first run became the baseline first: this one is compared with it
        canary = await asyncio.to_thread(get_canary, store, canary.name)
    verdict = None
    if canary.baseline_run and not rebaseline:
        base = await asyncio.to_thread(load_results, store, canary.baseline_run)
        verdict = check(base, results, Thresholds.model_validate(canary.thresholds))
    row, notice = await asyncio.to_thread(record_run, store, canary, outcome.run_id, started, verdict)
    return CanaryOutcome(row, verdict, notice)


def canary_summary(canary: Canary) -> dict[str, Any]:
    return {
        "name": canary.name,
        "target": canary.target,
        "suite": canary.suite_path,
        "schedule": canary.every or canary.cron,
        "channels": canary.channels,
        "thresholds": Thresholds.model_validate(canary.thresholds).model_dump(),
        "baseline_run": canary.baseline_run,
    }
