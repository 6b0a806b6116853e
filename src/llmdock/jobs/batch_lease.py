"""The lease that makes exactly one gateway worker process run the Batch API's batches.

Every worker of every gateway on one store asks for the ``batch-runner`` lease before it takes a batch; one
conditional UPDATE gives it to a worker when it is free, lapsed, or already that worker's, so exactly one
worker holds it. The holder renews it while it lives (every third of ``seconds``, the ``batch.lease_s``
setting); a holder that dies (``kill -9``, a lost machine) stops renewing, and ``seconds`` later the next worker
to ask takes it over and resumes the batch it left, from the batch's progress journal. A holder that shuts down
cleanly gives it back at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from llmdock.store.batch_lease_rows import BatchLease
from llmdock.store.engine import Store
from llmdock.store.lease import Lease

RUNNER = "batch-runner"
LEASE = Lease(BatchLease, BatchLease.owner, BatchLease.until)


def lead(store: Store, worker: str, seconds: float, name: str = RUNNER) -> bool:
    """Take or renew the lease ``name`` for ``worker`` for ``seconds``: True while ``worker`` holds it."""
    with store.session() as s, s.begin():
        if LEASE.take(s, [BatchLease.name == name], worker, seconds):
            return True
    try:  # the first worker ever: the row does not exist yet (a second one inserting it fails)
        with store.session() as s, s.begin():
            if s.get(BatchLease, name) is not None:
                return False
            s.add(BatchLease(name=name, owner=worker, until=datetime.now(UTC) + timedelta(seconds=seconds)))
    except IntegrityError:
        return False
    return True


def holder(store: Store, name: str = RUNNER) -> str:
    """The worker holding the lease now ("" when nobody does)."""
    with store.session() as s:
        return LEASE.holder(s, [BatchLease.name == name])


def resign(store: Store, worker: str, name: str = RUNNER) -> None:
    """Give the lease back (a worker shutting down): the next worker takes it without waiting."""
    with store.session() as s, s.begin():
        LEASE.resign(s, [BatchLease.name == name], worker)
