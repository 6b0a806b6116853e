"""Running a checked pipeline: its steps in order, each given its ``with`` block with references resolved, each
stored (status, inputs, outputs, attempts, log, duration) as it starts and ends.

A step is ``skipped`` when a step before it failed, when its ``if:`` is false, or when it uses the outputs of
a step that did not run; ``cached`` when caching is on and a previous run's step had the same key
(:func:`cache_key`). A failed attempt is retried ``retries`` times with exponential backoff (tenacity); each
attempt is bounded by ``timeout_s``. While a step runs, its log is flushed to the store and the run's row is
polled: ``llmdock jobs cancel`` (from any process) cancels the step (a shell step's process is killed) and
stores the rest as ``cancelled``.

The runner holds its run by a lease renewed by a heartbeat (``run_store``): a runner killed mid-run leaves a
run that is soon ``failed: runner lost``, which :func:`run_pipeline` given ``resume`` (``llmdock jobs resume``)
takes over, keeping the steps that had finished and running the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

import llmdock
from llmdock.errors import Conflict, InvalidRequest, LlmdockError
from llmdock.jobs import run_store
from llmdock.jobs.batch import RowAnswerer
from llmdock.jobs.executor import WorkerBuilders
from llmdock.jobs.pipeline_spec import Pipeline, StepSpec, condition_holds, resolve, step_refs
from llmdock.jobs.steps import Services, StepContext, StepFactory
from llmdock.store.engine import Store
from llmdock.store.jobs_rows import JobRun, JobStepRun

Report = Callable[[str, str, str], None]


class Cancelled(Exception):
    """The run was cancelled while this step ran."""


@dataclass
class RunOptions:
    by: str = ""
    use_cache: bool = True  # False: --no-cache (nothing reused; the keys are still stored)
    poll_s: float = 0.5  # how often a running step's log is flushed and the run's row is polled for cancel
    services: Services | None = None
    builders: WorkerBuilders | None = None  # what Ray workers build (the CLI's)
    lease_s: float = run_store.LEASE_S  # a run not renewed for this long is lost; renewed every third of it


def cache_key(spec: StepSpec, factory: StepFactory, inputs: dict[str, Any], ctx: StepContext) -> str:
    """sha256 of the step kind, its code version (the step's ``version`` and llmdock's), the resolved inputs
    and the content of every input, or argument of a command, that names an existing file (so an edited
    input file is a miss; a file read only inside a shell script is not seen: name it as an argument)."""
    files: dict[str, str] = {}
    for value in _strings(inputs):
        path = ctx.path(value) if len(value) < 4096 else None
        if path is not None and path.is_file():
            with path.open("rb") as f:
                files[value] = hashlib.file_digest(f, "sha256").hexdigest()
    material = {
        "uses": spec.uses,
        "version": str(getattr(factory, "version", "1")),
        "llmdock": llmdock.__version__,
        "inputs": inputs,
        "files": files,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            return [value, *shlex.split(value)] if " " in value else [value]
        except ValueError:
            return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


async def _attempts(spec: StepSpec, factory: StepFactory, inputs: dict[str, Any], ctx: StepContext) -> Any:
    """The step, retried on a failure (an LlmdockError, a timeout) ``retries`` times with backoff."""
    params = factory.Params.model_validate(inputs)
    retrying = AsyncRetrying(
        stop=stop_after_attempt(spec.retries + 1),
        wait=wait_exponential(multiplier=spec.backoff_s, max=max(spec.backoff_s, 1.0) * 60),
        retry=retry_if_exception_type((LlmdockError, TimeoutError)),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            n = attempt.retry_state.attempt_number
            if n > 1:
                ctx.log(f"attempt {n} of {spec.retries + 1}")
            ctx.attempts = n
            try:
                produced = await asyncio.wait_for(factory().run(params, ctx), spec.timeout_s)
                check_outputs(produced, factory)
                return produced
            except TimeoutError:
                ctx.log(f"attempt {n} did not finish in {spec.timeout_s:g} s")
                raise
    raise AssertionError("unreachable: tenacity re-raises the last failure")


async def _watched(
    store: Store, run_id: str, position: int, ctx: StepContext, work: Any, poll_s: float
) -> dict[str, Any]:
    """Run ``work`` while flushing the log and polling for a cancel; Cancelled when the run is cancelled."""
    task = asyncio.ensure_future(work)
    flushed = 0
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return dict(task.result())
        if len(ctx.lines) != flushed:
            flushed = len(ctx.lines)
            await asyncio.to_thread(run_store.save_step, store, run_id, position, log="\n".join(ctx.lines))
        if await asyncio.to_thread(run_store.run_status, store, run_id) != "running":  # cancelled or reaped
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise Cancelled


async def _run_step(
    pipeline: Pipeline, i: int, factory: StepFactory, run_id: str, store: Store, ctx: StepContext,
    outputs: dict[str, dict[str, Any]], options: RunOptions,
) -> dict[str, Any]:  # fmt: skip
    """One step to its stored end: the fields of its row (status, outputs or error, attempts, log…)."""
    spec = pipeline.steps[i]
    inputs = resolve(spec.with_, pipeline.params, outputs)
    caching = spec.cache if spec.cache is not None else pipeline.cache
    key = await asyncio.to_thread(cache_key, spec, factory, inputs, ctx) if caching else ""
    await asyncio.to_thread(
        run_store.save_step, store, run_id, i, status="running", inputs=inputs, cache_key=key
    )
    if key and options.use_cache:
        hit = await asyncio.to_thread(run_store.cached_outputs, store, key)
        if hit is not None:
            ctx.log(f"cached: the outputs of run {hit[0][:12]} (same inputs, files and step version)")
            return {"status": "cached", "outputs": hit[1], "cached_from": hit[0]}
    try:
        produced = await _watched(
            store, run_id, i, ctx, _attempts(spec, factory, inputs, ctx), options.poll_s
        )
        return {"status": "succeeded", "outputs": produced}
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        return {"status": "failed", "error": f"with.{'.'.join(map(str, first['loc']))}: {first['msg']}"}
    except TimeoutError:
        return {"status": "failed", "error": f"timed out after {spec.timeout_s:g} s"}
    except LlmdockError as exc:
        return {"status": "failed", "error": exc.one_line()}
    except Cancelled:
        return {"status": "cancelled", "error": "the run was cancelled"}


def _why_skip(spec: StepSpec, ran: set[str], status: str) -> str | None:
    if status != "succeeded":
        return f"the run has {status}" if status == "cancelled" else "a step before it failed"
    missing = sorted(step_refs(spec) - ran)
    if missing:
        return f"it uses the outputs of {', '.join(missing)}, which did not run"
    return None


async def _heartbeat(store: Store, run_id: str, lease_s: float) -> None:
    while True:
        await asyncio.sleep(lease_s / 3)
        if not await asyncio.to_thread(run_store.renew, store, run_id, lease_s):
            return  # no longer ours (reaped after a stall, or resumed elsewhere): the step poll stops it


def _same_steps(pipeline: Pipeline, stored: list[JobStepRun]) -> None:
    now = [(s.id, s.uses) for s in pipeline.steps]
    then = [(s.step_id, s.uses) for s in stored]
    if now != then:
        raise Conflict(
            f"{pipeline.path} has other steps than when the run started ({', '.join(i for i, _ in then)}): "
            "start a new run",
            param="run",
        )


async def run_pipeline(
    pipeline: Pipeline,
    steps: dict[str, StepFactory],
    store: Store,
    rows: Callable[[], RowAnswerer],
    *,
    options: RunOptions | None = None,
    report: Report = lambda step, status, detail: None,
    resume: tuple[JobRun, list[JobStepRun]] | None = None,
) -> JobRun:
    """Run every step in order, storing each; the run ends ``succeeded``, ``failed`` or ``cancelled``.
    ``resume``: a run claimed by ``run_store.claim_for_resume``; its finished steps are kept, not run."""
    options = options or RunOptions()
    if resume is None:
        run = await asyncio.to_thread(run_store.start_run, store, pipeline, options.by, options.lease_s)
        kept: dict[int, JobStepRun] = {}
    else:
        run, stored = resume
        _same_steps(pipeline, stored)
        kept = {s.position: s for s in stored if s.status in run_store.KEPT}
    heartbeat = asyncio.ensure_future(_heartbeat(store, run.id, options.lease_s))
    try:
        status = await _steps(pipeline, steps, store, rows, run.id, options, report, kept)
    finally:
        heartbeat.cancel()
    await asyncio.to_thread(run_store.end_run, store, run.id, status)
    run.status = status
    return run


async def _steps(
    pipeline: Pipeline, steps: dict[str, StepFactory], store: Store, rows: Callable[[], RowAnswerer],
    run_id: str, options: RunOptions, report: Report, kept: dict[int, JobStepRun],
) -> str:  # fmt: skip
    outputs: dict[str, dict[str, Any]] = {}
    status = "succeeded"
    for i, spec in enumerate(pipeline.steps):
        if i in kept:
            outputs[spec.id] = dict(kept[i].outputs)
            report(spec.id, "kept", f"{kept[i].status} before the resume")
            continue
        if (
            status == "succeeded"
            and await asyncio.to_thread(run_store.run_status, store, run_id) != "running"
        ):
            status = "cancelled"
        why = _why_skip(spec, set(outputs), status)
        if why is None and spec.if_ is not None and not condition_holds(spec.if_, pipeline.params, outputs):
            why = f"if: {spec.if_.strip()} is false"
        if why is not None:
            skipped = "cancelled" if status == "cancelled" else "skipped"
            await asyncio.to_thread(run_store.save_step, store, run_id, i, status=skipped, error=why)
            report(spec.id, skipped, why)
            continue
        ctx = StepContext(
            folder=pipeline.path.parent,
            rows=rows,
            services_=options.services,
            executor=pipeline.executor,
            builders=options.builders,
        )
        report(spec.id, "running", spec.uses)
        t0 = time.perf_counter()
        fields = await _run_step(pipeline, i, steps[spec.uses], run_id, store, ctx, outputs, options)
        fields.update(
            log="\n".join(ctx.lines), attempts=ctx.attempts, duration_ms=(time.perf_counter() - t0) * 1000
        )
        await asyncio.to_thread(run_store.save_step, store, run_id, i, **fields)
        report(spec.id, fields["status"], fields.get("error", ""))
        if fields["status"] in ("succeeded", "cached"):
            outputs[spec.id] = fields["outputs"]
        else:
            status = "cancelled" if fields["status"] == "cancelled" else "failed"
    return status


def check_outputs(produced: dict[str, Any], factory: StepFactory) -> None:
    """A step returns every output it declares (what later steps were checked to reference)."""
    missing = [o for o in factory.outputs if o not in produced]
    if missing:
        raise InvalidRequest(f"step {factory.name!r} did not produce {', '.join(missing)}")
