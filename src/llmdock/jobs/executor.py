"""Where rows and cases are computed: ``local`` (this process, the default) or ``ray`` (workers on a Ray
cluster, :mod:`llmdock.jobs.ray_executor`). The choice never changes a result: the process that runs the
batch or the evaluation keeps the journal and the store (what makes a run resumable), the workers only
compute, and the output keeps the input's order.

In a pipeline YAML (``executor:`` at the top, or in a ``batch.run``/``eval.run``/``eval.gate`` step's
``with:``) and on the command line (``--executor ray --address auto``) the same three fields:

    executor: ray                                    # address auto: RAY_ADDRESS, else the `ray start` here
    executor: {kind: ray, address: "ray://head:10001", workers: 4}

A worker builds what answers (the served pipeline, a suite's targets and checks) from a *builder*: a
picklable zero-argument coroutine function given by the composition root (the CLI), since ``jobs`` knows
neither the runtime nor the gateway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from llmdock.errors import InvalidRequest, LlmdockError

Builder = Callable[[], Awaitable[Any]]


class ExecutorUnavailable(LlmdockError):
    """The executor cannot be reached or lost a worker: nothing done is lost (run again to resume)."""

    status: ClassVar[int] = 503
    code: ClassVar[str] = "executor_unavailable"


class ExecutorSpec(BaseModel):
    """``local``, ``ray``, or ``{kind, address, workers, start_timeout_s}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["local", "ray"] = "local"
    address: str = Field(default="auto", min_length=1, description="auto, HOST:PORT or ray://HOST:PORT")
    workers: int | None = Field(default=None, ge=1, description="Ray workers [one per node]")
    start_timeout_s: float = Field(default=300, gt=0, description="how long the workers may take to start")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value

    @property
    def remote(self) -> bool:
        return self.kind != "local"


LOCAL = ExecutorSpec()


def chosen(
    flag: str | None, address: str | None, workers: int | None, base: ExecutorSpec | None = None
) -> ExecutorSpec:
    """The executor of ``--executor``/``--address``/``--workers`` over the file's (``base``); an address or
    a worker count alone means Ray."""
    spec = base or LOCAL
    fields: dict[str, Any] = {}
    if flag is not None:
        fields["kind"] = flag
    if address is not None:
        fields["address"] = address
    if workers is not None:
        fields["workers"] = workers
    if (address is not None or workers is not None) and flag is None:
        fields["kind"] = "ray"
    if not fields:
        return spec
    try:
        return ExecutorSpec.model_validate({**spec.model_dump(), **fields})
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        field = {"kind": "executor"}.get(str(first["loc"][0]), str(first["loc"][0]))
        raise InvalidRequest(f"--{field}: {first['msg']}", param=field) from None


@dataclass(frozen=True)
class WorkerBuilders:
    """What a Ray worker builds, given by the CLI: ``rows()`` the served pipeline's row answerer (with an
    ``answer(url, body)`` and a ``close()``); ``scorer(suite)`` a builder of a suite's case scorer."""

    rows: Builder
    scorer: Callable[[Any], Builder]
