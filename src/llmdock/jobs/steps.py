"""Pipeline steps: what a ``uses:`` in a pipeline YAML names. Each is a plugin, registered through the
``llmdock_job_steps`` hook like stages and metrics (the built-ins in ``default_plugins/job_steps.py``).

A step class has a ``name``, a pydantic ``Params`` model (its ``with:`` block, checked before anything runs),
the ``outputs`` it produces (what ``${steps.<id>.outputs.<name>}`` may reference, checked before anything
runs too) and ``async run(params, ctx) -> outputs``. A step fails by raising an ``LlmdockError``.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from llmdock.errors import InvalidRequest
from llmdock.jobs.batch import RowAnswerer, run_file


@dataclass
class StepContext:
    """What a step may use: the pipeline file's folder (relative paths are from there), a log, and the served
    pipeline's row answerer (built on first use: a pipeline of shell steps loads no model)."""

    folder: Path
    rows: Callable[[], RowAnswerer]
    lines: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)

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
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(params.run),
            cwd=ctx.folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), params.timeout_s)
        except TimeoutError:
            proc.kill()
            raise InvalidRequest(f"{params.run!r} did not finish in {params.timeout_s:g} s") from None
        text = out.decode(errors="replace")
        ctx.lines.extend(text.splitlines())
        if proc.returncode:
            raise InvalidRequest(f"{params.run!r} exited with {proc.returncode}")
        return {"stdout": text.strip(), "exit_code": proc.returncode}


class BatchParams(StepParams):
    input: str = Field(min_length=1)
    output: str = Field(min_length=1)
    model: str | None = None
    prompt: str | None = None
    concurrency: int = Field(default=8, ge=1)


class BatchStep:
    """``llmdock batch run`` as a step: every row through the served pipeline, resumable, in order."""

    name: ClassVar[str] = "batch.run"
    Params: ClassVar[type[StepParams]] = BatchParams
    outputs: ClassVar[tuple[str, ...]] = ("output", "answered", "failed")

    async def run(self, params: BatchParams, ctx: StepContext) -> dict[str, Any]:
        src, out = ctx.path(params.input), ctx.path(params.output)
        if not src.is_file():
            raise InvalidRequest(f"no input file {src}", param="input")
        answered, failed = await run_file(
            src, out, ctx.rows, model=params.model, prompt=params.prompt, concurrency=params.concurrency
        )
        ctx.log(f"{answered + failed} rows: {answered} answered, {failed} with an error -> {out}")
        return {"output": str(out), "answered": answered, "failed": failed}


BUILTIN_STEPS: list[StepFactory] = [ShellStep, BatchStep]
