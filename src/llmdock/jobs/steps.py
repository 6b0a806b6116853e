"""Pipeline steps: what a ``uses:`` in a pipeline YAML names. Each is a plugin, registered through the
``llmdock_job_steps`` hook like stages and metrics (the built-ins in ``default_plugins/job_steps.py``).

A step class has a ``name``, a pydantic ``Params`` model (its ``with:`` block, checked before anything runs),
the ``outputs`` it produces (what ``${steps.<id>.outputs.<name>}`` may reference, checked before anything
runs too) and ``async run(params, ctx) -> outputs``. A step fails by raising an ``LlmdockError``.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from llmdock.config import Settings
from llmdock.errors import ConfigError, InvalidRequest
from llmdock.jobs.batch import RowAnswerer, run_file
from llmdock.jobs.executor import LOCAL, ExecutorSpec, WorkerBuilders
from llmdock.store.audit import Actor
from llmdock.store.engine import Store

if TYPE_CHECKING:
    from llmdock.datasets.steps.base import Step as DatasetStep
    from llmdock.evaluate.targets import Serving


@dataclass
class Services:
    """The existing services a step calls (datasets, evaluation, registry, scan), given by whoever runs the
    pipeline: the settings, the store, who acts (the audit log), the registered metrics and dataset steps, and
    the in-process serving runtime (built on first use)."""

    settings: Settings
    store: Store
    actor: Actor
    serving: Callable[[], Serving]
    metrics: Mapping[str, Any]
    dataset_steps: Mapping[str, type[DatasetStep]]


@dataclass
class StepContext:
    """What a step may use: the pipeline file's folder (relative paths are from there), a log, and the served
    pipeline's row answerer (built on first use: a pipeline of shell steps loads no model)."""

    folder: Path
    rows: Callable[[], RowAnswerer]
    lines: list[str] = field(default_factory=list)
    services_: Services | None = None
    attempts: int = 0
    executor: ExecutorSpec = LOCAL  # the pipeline's (executor: in the file, or --executor)
    builders: WorkerBuilders | None = None  # what Ray workers build (given by the CLI)

    @property
    def services(self) -> Services:
        if self.services_ is None:
            raise ConfigError("this step needs the store and settings, which this runner does not give")
        return self.services_

    def log(self, line: str) -> None:
        self.lines.append(line)

    def remote(self, kind: str | None) -> tuple[ExecutorSpec, WorkerBuilders] | None:
        """The Ray executor and builders a fan-out step runs on (its ``executor:`` over the pipeline's), or
        None to run here."""
        spec = self.executor if kind is None else self.executor.model_copy(update={"kind": kind})
        if not spec.remote:
            return None
        if self.builders is None:
            raise ConfigError("this runner cannot start Ray workers: run the pipeline with llmdock jobs run")
        self.log(f"executor: ray at {spec.address}")
        return spec, self.builders

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.folder / p


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobStep(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[StepParams]]
    outputs: ClassVar[tuple[str, ...]]

    async def run(self, params: Any, ctx: StepContext) -> dict[str, Any]: ...


StepFactory = type[JobStep]


class ShellParams(StepParams):
    run: str = Field(min_length=1, description="the command; split like a shell would, run without one")
    timeout_s: float = Field(default=3600, gt=0)


class ShellStep:
    """Runs a command (no shell: arguments are split with shlex); fails on a non-zero exit."""

    name: ClassVar[str] = "shell"
    Params: ClassVar[type[StepParams]] = ShellParams
    outputs: ClassVar[tuple[str, ...]] = ("stdout", "exit_code")

    async def run(self, params: ShellParams, ctx: StepContext) -> dict[str, Any]:
        try:
            argv = shlex.split(params.run)
        except ValueError as exc:
            raise InvalidRequest(f"{params.run!r}: {exc}", param="run") from None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=ctx.folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
        except OSError as exc:
            raise InvalidRequest(f"{params.run!r}: {exc.strerror}", param="run") from None
        start = len(ctx.lines)
        try:
            await asyncio.wait_for(self._read(proc, ctx), params.timeout_s)
        except TimeoutError:
            raise InvalidRequest(f"{params.run!r} did not finish in {params.timeout_s:g} s") from None
        finally:  # a timeout, or the step cancelled (its run cancelled, its timeout_s): no process left over
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode:
            raise InvalidRequest(f"{params.run!r} exited with {proc.returncode}")
        return {"stdout": "\n".join(ctx.lines[start:]).strip(), "exit_code": proc.returncode}

    @staticmethod
    async def _read(proc: asyncio.subprocess.Process, ctx: StepContext) -> None:
        """Line by line into the step's log, so ``llmdock jobs logs`` shows a running step's output."""
        assert proc.stdout is not None
        async for line in proc.stdout:
            ctx.lines.append(line.decode(errors="replace").rstrip("\n"))
        await proc.wait()


class BatchParams(StepParams):
    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    model: str | None = None
    prompt: str | None = None
    concurrency: int = Field(default=8, ge=1)
    executor: Literal["local", "ray"] | None = Field(default=None, description="[the pipeline's]")


class BatchStep:
    """``llmdock batch run`` as a step: every row through the served pipeline, resumable, in order."""

    name: ClassVar[str] = "batch.run"
    Params: ClassVar[type[StepParams]] = BatchParams
    outputs: ClassVar[tuple[str, ...]] = ("output", "answered", "failed")

    async def run(self, params: BatchParams, ctx: StepContext) -> dict[str, Any]:
        src, out = ctx.path(params.input), ctx.path(params.output)
        if not src.is_file():
            raise InvalidRequest(f"no input file {src}", param="input")
        remote = ctx.remote(params.executor)
        ray_rows = None if remote is None else await _ray_rows(*remote)
        try:
            answered, failed = await run_file(
                src,
                out,
                ctx.rows if ray_rows is None else lambda: ray_rows,
                model=params.model,
                prompt=params.prompt,
                concurrency=params.concurrency,
            )
        finally:
            if ray_rows is not None:
                await ray_rows.close()
        ctx.log(f"{answered + failed} rows: {answered} answered, {failed} with an error -> {out}")
        return {"output": str(out), "answered": answered, "failed": failed}


async def _ray_rows(spec: ExecutorSpec, builders: WorkerBuilders) -> Any:
    from llmdock.jobs.ray_executor import RayRows, pooled

    return await pooled(builders.rows, spec, RayRows)


BUILTIN_STEPS: list[StepFactory] = [ShellStep, BatchStep]
