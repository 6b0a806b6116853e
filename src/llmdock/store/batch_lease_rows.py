"""The lease that makes one gateway worker process the Batch API's runner (issue 22).

One row per lease name (``batch-runner``): the worker holding it and until when. A worker takes it by one
conditional UPDATE (free, lapsed, or its own), so of every worker of every gateway on one store exactly one
runs batches; a worker that dies stops renewing, and when the lease lapses another takes it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.store.models import Base


class BatchLease(Base):
    __tablename__ = "batch_leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="")
    until: Mapped[datetime | None] = mapped_column(nullable=True)
