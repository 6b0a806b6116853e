"""Pipeline steps over evaluation and scanning: ``eval.run`` (a suite, stored as a run), ``eval.gate`` (an
existing run, or a fresh one, held to the suite's bounds and optionally a baseline: outputs ``passed``, what
``if: ${steps.gate.passed}`` reads) and ``scan`` (the red-team probes). Each calls ``llmdock.evaluate`` or
``llmdock.scan`` as the CLI does, answered by the pipeline's in-process runtime."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

from pydantic import Field

from llmdock.errors import InvalidRequest
from llmdock.jobs.steps import StepContext, StepParams


async def _run_suite(
    suite: Any, ctx: StepContext, concurrency: int | None, executor: str | None = None
) -> tuple[str, list[Any]]:
    from llmdock.evaluate.results import load_results
    from llmdock.evaluate.runner import run
    from llmdock.jobs.ray_executor import RayScorer, pooled

    services = ctx.services
    remote = ctx.remote(executor)
    scorer = None if remote is None else await pooled(remote[1].scorer(suite), remote[0], RayScorer)
    outcome = await run(
        suite,
        services.store,
        services.metrics,
        services.serving() if remote is None else None,
        concurrency=concurrency,
        show_progress=False,
        by=services.actor.name,
        scorer=scorer,
    )
    return outcome.run_id, await asyncio.to_thread(load_results, services.store, outcome.run_id)


def _summary(results: list[Any], ctx: StepContext) -> dict[str, Any]:
    from llmdock.evaluate.stats import summarize

    summaries = summarize(results)
    for s in summaries:
        ctx.log(f"{s.target}: {s.n_results} results, {s.errored} errored, pass rate {s.pass_rate.mean:.3f}")
    first = summaries[0] if summaries else None
    return {
        "results": sum(s.n_results for s in summaries),
        "errored": sum(s.errored for s in summaries),
        "pass_rate": round(first.pass_rate.mean, 6) if first and not first.pass_rate.empty else 0.0,
    }


class EvalRunParams(StepParams):
    suite: str = Field(min_length=1, description="the suite (YAML)")
    concurrency: int | None = Field(default=None, ge=1)
    executor: Literal["local", "ray"] | None = Field(default=None, description="[the pipeline's]")


class EvalRunStep:
    """``llmdock eval run SUITE`` as a step: every case through the targets, scored and stored."""

    name: ClassVar[str] = "eval.run"
    Params: ClassVar[type[StepParams]] = EvalRunParams
    outputs: ClassVar[tuple[str, ...]] = ("run_id", "results", "errored", "pass_rate")

    async def run(self, params: EvalRunParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.evaluate.suite import load_suite

        suite = await asyncio.to_thread(load_suite, ctx.path(params.suite))
        run_id, results = await _run_suite(suite, ctx, params.concurrency, params.executor)
        ctx.log(f"evaluation run {run_id}")
        return {"run_id": run_id, **_summary(results, ctx)}


class EvalGateParams(StepParams):
    suite: str = Field(min_length=1, description="the suite (YAML): its gate: bounds")
    run: str | None = Field(default=None, description="gate this stored run (default: run the suite now)")
    min: dict[str, float] = Field(default_factory=dict, description="LABEL: bound, beside the suite's gate:")
    baseline: str | None = Field(default=None, description="as eval gate --baseline (a run, NAME@alias…)")
    alpha: float = Field(default=0.05, gt=0, lt=1)
    fail: bool = Field(default=False, description="fail the step (and the run) when the gate does not pass")
    executor: Literal["local", "ray"] | None = Field(default=None, description="[the pipeline's]")


class EvalGateStep:
    """``llmdock eval gate`` as a step: outputs ``passed`` (and the reasons) rather than an exit code."""

    name: ClassVar[str] = "eval.gate"
    Params: ClassVar[type[StepParams]] = EvalGateParams
    outputs: ClassVar[tuple[str, ...]] = ("passed", "run_id", "reasons")

    async def run(self, params: EvalGateParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.evaluate.baseline import find_baseline
        from llmdock.evaluate.compare import compare
        from llmdock.evaluate.gate import gate
        from llmdock.evaluate.results import get_run, load_results
        from llmdock.evaluate.suite import load_suite

        store = ctx.services.store
        suite = await asyncio.to_thread(load_suite, ctx.path(params.suite))
        if params.run:
            run_id = (await asyncio.to_thread(get_run, store, params.run)).id
            results = await asyncio.to_thread(load_results, store, run_id)
        else:
            run_id, results = await _run_suite(suite, ctx, None, params.executor)
        comparison = None
        if params.baseline:
            found = await asyncio.to_thread(
                find_baseline, store, ctx.services.settings.home, suite.name, params.baseline
            )
            ctx.log(found.why)
            base = await asyncio.to_thread(load_results, store, found.run.id)
            comparison = compare(base, results, alpha=params.alpha)
        verdict = gate(results, {**suite.spec.gate, **params.min}, comparison, alpha=params.alpha)
        for c in verdict.conditions:
            ctx.log(f"{'ok  ' if c.ok else 'FAIL'} {c.reason}")
        if params.fail and not verdict.ok:
            raise InvalidRequest(f"gate failed: {'; '.join(c.reason for c in verdict.failures)}")
        return {"passed": verdict.ok, "run_id": run_id, "reasons": verdict.reasons}


class ScanParams(StepParams):
    target: str = Field(min_length=1, description="a model, a prompt (name@label) or a URL")
    model: str | None = None
    categories: list[str] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    max_tokens: int = Field(default=96, ge=1)
    concurrency: int = Field(default=4, ge=1)
    judge: str | None = None


class ScanStep:
    """``llmdock scan --target T`` as a step: the probes asked, judged and kept (``llmdock scan report RUN``)."""

    name: ClassVar[str] = "scan"
    Params: ClassVar[type[StepParams]] = ScanParams
    outputs: ClassVar[tuple[str, ...]] = ("run_id", "findings", "found")

    async def run(self, params: ScanParams, ctx: StepContext) -> dict[str, Any]:
        from llmdock.scan import ScanOptions, parse_categories, run_scan

        options = ScanOptions(
            target=params.target,
            model=params.model,
            categories=tuple(parse_categories(params.categories)),
            limit=params.limit,
            seed=params.seed,
            max_tokens=params.max_tokens,
            concurrency=params.concurrency,
            judge=params.judge,
        )
        services = ctx.services
        result = await run_scan(
            options, services.serving(), services.store, show_progress=False, by=services.actor.name
        )
        found = sum(t.counts["found"] for t in result.tallies)
        for f in result.findings:
            ctx.log(f"{f.severity}: {f.category} on {f.target}, {f.failed} of {f.probes} probes")
        return {"run_id": result.run_id, "findings": len(result.findings), "found": found}
