"""The batch section (``batch``): how the gateway's Batch API runner holds its leases and how many rows it
runs at once (docs/batch.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_LEASE_S = 10.0
DEFAULT_CONCURRENCY = 8


class BatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lease_s: float = Field(
        default=DEFAULT_LEASE_S,
        ge=1.0,
        le=3600.0,
        description="how long the Batch API's runner holds its leases (the runner's and the running batch's) "
        "without renewing them; renewed every third of it. A runner killed mid-batch is taken over this long "
        "after its last renewal: shorter resumes sooner, but a runner whose renewal is late by more than two "
        "thirds of it (a stalled store) loses the batch to another worker, which answers its rows in flight again",
    )
    concurrency: int = Field(
        default=DEFAULT_CONCURRENCY,
        ge=1,
        le=1024,
        description="rows the Batch API's runner sends through the pipeline at once, beside the interactive "
        "traffic; more than the backends' slots (an embedded model's n_parallel) only queues rows",
    )
