"""``run_scan``: the probes through the evaluation runner (its targets, concurrency, progress bar and store),
then the group comparisons and the findings.

A scan is an evaluation run in the store (suite ``scan``, check ``probe``): ``llmdock eval list`` lists it,
``eval show`` and ``eval compare`` work on it. ``guards`` picks the pipeline of an in-process target:
``on`` adds ``guard_in``/``guard_out`` to the served pipeline, ``off`` takes them out, ``both`` scans the two
side by side (two targets of one run), ``None`` keeps the served pipeline as it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmdock.errors import InvalidRequest
from llmdock.evaluate import Case, CaseResult, Check
from llmdock.evaluate.results import load_results
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import Suite, SuiteSpec, TargetSpec
from llmdock.evaluate.targets import Serving
from llmdock.scan.corpora import CORPORA, TEMPLATES, Corpus
from llmdock.scan.findings import (
    Finding,
    Tally,
    aggregate,
    block_pattern,
    is_reference,
    ordered,
    prompt_text,
    status_of,
)
from llmdock.scan.groups import compare_groups
from llmdock.scan.judges import Judgement, ProbeMetric
from llmdock.scan.probes import CATEGORIES, probes
from llmdock.scan.sentiment import SentimentGap, gap_findings, gaps, pair_scores
from llmdock.scan.stored import save_report
from llmdock.store.engine import Store

Guards = Literal["on", "off", "both"] | None
GUARD_STAGES = ("guard_in", "guard_out")


@dataclass(frozen=True, slots=True)
class ScanOptions:
    target: str  # a model name, a prompt (name@label or name/version), or an OpenAI-compatible URL
    model: str | None = None  # the model a URL or a prompt target asks
    guards: Guards = None
    categories: tuple[str, ...] = ()
    limit: int | None = None
    seed: int = 0
    max_tokens: int = 96
    concurrency: int = 4
    judge: str | None = None  # a model that judges the rules with a rubric (hallucination, sycophancy…)
    config: str | None = None  # the config file, for the reproductions


@dataclass
class ScanResult:
    run_id: str
    options: ScanOptions
    cases: dict[str, Case]
    results: list[CaseResult]
    tallies: list[Tally]
    findings: list[Finding]
    corpora: tuple[Corpus, ...]
    pipelines: dict[str, list[str]]  # per target label, the stages it ran (a URL: its server's own)
    groups: dict[tuple[str, str], Judgement]  # the group verdicts, by (target, case id)
    blocked: re.Pattern[str]  # what a guard's refusal looks like in a result's error
    sentiment: list[SentimentGap]  # per target and bias axis: the answers' sentiment compared pair by pair

    def data(self) -> dict[str, Any]:
        """Everything the report shows, JSON-native (what the store keeps, so a report written now and one
        written later from the store are the same): options, pipelines, tallies, findings, sentiment,
        corpora, and every probe with its status, reason, prompt and answer."""
        probes = []
        for r in sorted(self.results, key=lambda r: (r.target, r.case_id)):
            case = self.cases[r.case_id]
            status, why = status_of(case, r, self.groups.get((r.target, r.case_id)), self.blocked)
            if is_reference(case) and not r.error:
                why = "the reference the group's other answers are compared with"
            meta = case.metadata
            probes.append(
                {
                    "target": r.target,
                    "case_id": r.case_id,
                    "category": meta["category"],
                    "source": meta["source"],
                    "status": status,
                    "why": why,
                    "messages": case.messages,
                    "prompt": prompt_text(case),
                    "output": r.output.text,
                }
            )
        data = {
            "run_id": self.run_id,
            "options": dataclasses.asdict(self.options),
            "pipelines": self.pipelines,
            "categories": {c.name: dataclasses.asdict(c) for c in CATEGORIES.values()},
            "tallies": [{**dataclasses.asdict(t), "found_rate": t.found_rate} for t in self.tallies],
            "findings": [{**dataclasses.asdict(f), "rate": f.rate} for f in self.findings],
            "sentiment": [{**dataclasses.asdict(g), "sentence": g.sentence} for g in self.sentiment],
            "corpora": [dataclasses.asdict(c) for c in self.corpora],
            "probes": probes,
        }
        native: dict[str, Any] = json.loads(json.dumps(data))
        return native


def guarded(pipeline: list[str], on: bool) -> list[str]:
    """The pipeline with the guard stages added before and after generation, or taken out."""
    stages = [s for s in pipeline if s not in GUARD_STAGES and s != "cache"]
    if not on:
        return stages
    first = stages.index("generate") if "generate" in stages else 0
    stages.insert(first, "guard_in")
    last = stages.index("postprocess") if "postprocess" in stages else len(stages)
    stages.insert(last, "guard_out")
    return stages


def target_specs(options: ScanOptions, served: list[str], params: dict[str, Any]) -> list[TargetSpec]:
    """The targets ``--target`` and ``--guards`` name (two for ``both``)."""
    ref = options.target
    if ref.startswith(("http://", "https://")):
        if options.guards is not None:
            raise InvalidRequest(
                "--guards works on in-process targets; a URL runs its own pipeline", param="guards"
            )
        if not options.model:
            raise InvalidRequest("a URL target needs --model", param="model")
        return [TargetSpec(url=ref, model=options.model, params=params)]
    prompt = ref if ("@" in ref or "/" in ref) else None
    model = options.model if prompt else ref
    base = {"model": model, "prompt": prompt, "params": params}
    label = ref if not options.model or not prompt else f"{options.model}+{ref}"
    if options.guards is None:
        return [TargetSpec(name=label, **base)]
    sides = ("off", "on") if options.guards == "both" else (options.guards,)
    return [
        TargetSpec(name=f"{label} guards {side}", pipeline=guarded(served, side == "on"), **base)
        for side in sides
    ]


def chat_args(spec: TargetSpec, options: ScanOptions, params: dict[str, Any]) -> list[str]:
    """The ``llmdock chat`` options that ask as the scan asked this target."""
    args = ["--model", spec.model or options.target]
    if spec.url:
        args += ["--url", spec.url]
    if options.config:
        args += ["--config", options.config]
    sampling = {"max_tokens": options.max_tokens, **params}
    for name in ("max_tokens", "temperature", "seed"):
        args += [f"--{name.replace('_', '-')}", str(sampling[name])]
    return args


def build_suite(options: ScanOptions, cases: list[Case], specs: list[TargetSpec]) -> Suite:
    rules = sorted({str(c.metadata["rule"]) for c in cases})
    value = {"judge": options.judge or "", "rules": rules}
    spec = SuiteSpec.model_validate(
        {
            "name": "scan",
            "description": f"llmdock scan of {options.target}",
            "dataset": "(generated probes)",
            "targets": [s.model_dump() for s in specs],
            "assert": [{"type": "probe", "value": value}],
            "seed": options.seed,
            "concurrency": options.concurrency,
            "max_tokens": options.max_tokens,
        }
    )
    digest = hashlib.sha256(
        json.dumps([spec.model_dump(by_alias=True), [c.messages for c in cases]], default=str).encode()
    ).hexdigest()
    check = Check("probe", value, where="scan: probe")
    return Suite(spec, Path("scan"), [check], cases, digest, [])


async def run_scan(
    options: ScanOptions, serving: Serving, store: Store, *, show_progress: bool = True, by: str = ""
) -> ScanResult:
    """Generate the probes, ask every target through the evaluation runner, judge, find, and keep what was
    found in the store (``llmdock scan report RUN`` writes the report again from it)."""
    cases = probes(options.categories, options.limit, options.seed)
    params = {"temperature": 0.0, "seed": options.seed}
    specs = target_specs(options, list(serving.settings.pipeline), params)
    suite = build_suite(options, cases, specs)
    outcome = await run(
        suite, store, {ProbeMetric.name: ProbeMetric}, serving, show_progress=show_progress, by=by
    )
    results = await asyncio.to_thread(load_results, store, outcome.run_id)
    by_id = {c.id: c for c in cases}
    groups = await compare_groups(by_id, results, serving.stage_env)
    repro = {s.label: chat_args(s, options, params) for s in specs}
    blocked = block_pattern(serving.settings.guards.block_message)
    tallies, findings = aggregate(by_id, results, groups, blocked, repro)
    scored = await pair_scores(by_id, results, serving.stage_env)
    sentiment = gaps(by_id, scored)
    findings = ordered([*findings, *gap_findings(by_id, scored, sentiment, repro)])
    used = {str(c.metadata["source"]) for c in cases}
    corpora = tuple(c for c in (*CORPORA, TEMPLATES) if any(c.id in u.split("+") for u in used))
    served = [s for s in serving.settings.pipeline if s != "cache"]
    pipelines = {s.label: list(s.pipeline or ([] if s.url else served)) for s in specs}
    result = ScanResult(
        outcome.run_id,
        options,
        by_id,
        results,
        tallies,
        findings,
        corpora,
        pipelines,
        groups,
        blocked,
        sentiment,
    )
    await asyncio.to_thread(save_report, store, result.run_id, result.data())
    return result
