"""The partial indexes of migration 0030 serve the queries the dashboard really sends: the trace list under
the prompt and "flagged" filters, and the experiment page's read of its traces. Each query is captured as the
page code runs it (with its parameters), checked for the right rows, and then EXPLAINed, on SQLite and on
PostgreSQL (whose planner is told to avoid sequential scans: a table this small would be read whole)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from llmdock.experiments.results import variant_stats
from llmdock.feedback import Scope
from llmdock.store import Store
from llmdock.store.experiment_rows import ExperimentRow
from llmdock.store.trace_records import SpanRecord
from llmdock.store.traces import write_traces
from llmdock.ui.trace_query import TraceFilters, list_page
from tests.integration.test_ui import record

NOW = datetime.now(UTC)
EVERY_TEAM = Scope(team=None)


def traces() -> list[Any]:
    """40 traces: 3, 13, 23 and 33 used the prompt ``greet``, every 4th a detector flagged, the others of
    the first 12 were in the experiment ``tone`` (even ones variant a, odd ones b)."""
    out = []
    for i in range(40):
        at = NOW - timedelta(minutes=50 - i)
        flagged = i % 4 == 0
        spans = [SpanRecord("guard_in.pii", at, 1.0, "ok", {"score": 0.5, "flagged": flagged})]
        attributes: dict[str, Any] = {}
        if i % 10 == 3:
            attributes = {"llmdock.prompt_template": "greet", "llmdock.prompt_version": 1}
        elif i < 12:
            attributes = {"llmdock.experiment": "tone", "llmdock.experiment_variant": "ab"[i % 2]}
        out.append(replace(record(i, created_at=at, attributes=attributes), spans=spans))
    return out


@contextmanager
def statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def heard(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FROM traces" in statement:
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", heard)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", heard)


def plan(store: Store, statement: str, parameters: Any) -> str:
    with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return " / ".join(str(r[-1]) for r in rows)
        conn.exec_driver_sql("SET enable_seqscan = off")
        return " / ".join(str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))


def test_the_prompt_flagged_and_experiment_queries_read_their_partial_indexes(db_url: str) -> None:
    store = Store(db_url)
    try:
        write_traces(store, traces())
        with statements(store) as seen:
            rows, _ = list_page(store, TraceFilters(prompt="greet"), EVERY_TEAM)
        assert {r.id for r in rows} == {f"t{i:05d}" for i in (3, 13, 23, 33)}
        assert "ix_traces_ui_prompt" in plan(store, *seen[-1])

        with statements(store) as seen:
            rows, _ = list_page(store, TraceFilters(guard="flagged"), EVERY_TEAM)
        assert {r.id for r in rows} == {f"t{i:05d}" for i in range(0, 40, 4)}
        assert "ix_traces_ui_flagged" in plan(store, *seen[-1])

        variants = [
            {"name": "a", "model": "fake", "weight": 50},
            {"name": "b", "model": "fake", "weight": 50},
        ]
        experiment = ExperimentRow(name="tone", variants=variants, starts_at=NOW - timedelta(hours=2))
        with statements(store) as seen:
            stats = variant_stats(store, experiment)
        assert (stats["a"].n, stats["b"].n) == (6, 5)  # traces 0-11 but 3 (the prompt's): even a, odd b
        assert "ix_traces_ui_experiment" in plan(store, *seen[0])
    finally:
        store.close()
