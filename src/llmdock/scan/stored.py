"""What a scan found, kept in the store (``scan_reports``) beside its run, so that its report can be
written again later from the store alone: ``llmdock scan report RUN -o scan.html``, no probe asked again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmdock.errors import NotFound
from llmdock.evaluate.results import get_run
from llmdock.store.engine import Store
from llmdock.store.models import ScanReport


def save_report(store: Store, run_id: str, data: dict[str, Any]) -> None:
    """Keep ``data`` (:meth:`llmdock.scan.ScanResult.data`) as the report of ``run_id`` (replacing one)."""
    with store.session() as s, s.begin():
        s.merge(ScanReport(run_id=run_id, data=data, created_at=datetime.now(UTC)))


def load_report(store: Store, run_ref: str) -> dict[str, Any]:
    """The kept report data of the scan ``run_ref`` (a run id or a unique prefix)."""
    run = get_run(store, run_ref)
    with store.session() as s:
        row = s.get(ScanReport, run.id)
        if row is None:
            raise NotFound(
                f"run {run.id} ({run.suite}) has no scan report: it is not a scan, or was made before scans "
                "kept their findings (run `llmdock scan` again)",
                param="run",
            )
        data: dict[str, Any] = row.data
        return data
