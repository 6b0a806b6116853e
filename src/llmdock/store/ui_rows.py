"""The dashboard's tables and the trace indexes its filters need (``llmdock.ui``).

``UiSession``: one signed-in browser. The cookie carries a random token (signed); the row keeps only the
token's SHA-256, and the key's prefix and keyed hash (as ``api_keys`` stores them), so every page checks the
key again: a revoked or expired key ends its sessions at once, and logging out deletes the row.

The indexes serve the trace list's keyset pagination (newest first, ``created_at, id``) under its most
selective filters: a model, a status (errors are rare), a team (every non-admin view is one team's); and,
partial (migration 0030: only the rows that have it), a prompt template, an experiment (the experiment
page adds up its traces since its start per variant and status: migration 0032 put in the index every column
it reads, so that SQLite never reads a trace's row) and a guard detector's flag. An expression index serves a query only
when the query writes the same expression: the page queries use :func:`trace_attribute` and
:func:`flagged_spans`, which write the attribute's name and the patterns into the SQL (bound parameters
would not match the index).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, Index, Integer, String, cast, literal_column, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from llmdock.store.models import Base, Trace


class UiSession(Base):
    __tablename__ = "ui_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's token
    key_prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)


EXPERIMENT_ATTRIBUTE = "llmdock.experiment"  # set by the experiments' assignment (experiments.live)
VARIANT_ATTRIBUTE = "llmdock.experiment_variant"
PROMPT_ATTRIBUTE = "llmdock.prompt_template"  # set by the prompt stage
# A guard detector's span that flagged, as the trace writer stores it (compact JSON on SQLite, json.dumps'
# spacing on PostgreSQL): neither pattern holds a LIKE wildcard.
FLAGGED_PATTERNS = ('"flagged":true', '"flagged": true')


class trace_attribute(FunctionElement[str]):
    """``traces.attributes[name]`` as text (NULL when absent), with ``name`` written into the SQL:
    ``json_extract(attributes, '$."name"')`` on SQLite, ``(attributes ->> 'name')`` on PostgreSQL."""

    inherit_cache = True
    type = String()
    name = "trace_attribute"

    def __init__(self, attribute: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.]+", attribute):
            raise ValueError(f"not an attribute name for an index: {attribute!r}")
        self.attribute = attribute
        super().__init__()

    def _gen_cache_key(self, anon_map: Any, bindparams: Any) -> tuple[Any, ...]:
        return (trace_attribute, self.attribute)


@compiles(trace_attribute, "sqlite")
def _attribute_sqlite(element: trace_attribute, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(Trace.__table__.c.attributes, **kw)
    return f"json_extract({column}, '$.\"{element.attribute}\"')"


@compiles(trace_attribute)
def _attribute_default(element: trace_attribute, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(Trace.__table__.c.attributes, **kw)
    return f"({column} ->> '{element.attribute}')"


def flagged_spans() -> ColumnElement[bool]:
    """The trace has a guard detector's span that flagged (whatever the guard then did)."""
    spans = cast(Trace.spans, String)
    return or_(*(spans.like(literal_column(f"'%{p}%'")) for p in FLAGGED_PATTERNS))


def _present(attribute: str) -> dict[str, Any]:
    where = trace_attribute(attribute).is_not(None)
    return {"sqlite_where": where, "postgresql_where": where}


TRACE_INDEXES = (
    Index("ix_traces_ui_model", Trace.model, Trace.created_at, Trace.id),
    Index("ix_traces_ui_status", Trace.status, Trace.created_at, Trace.id),
    Index("ix_traces_ui_team", Trace.team_id, Trace.created_at, Trace.id),
    Index(  # as SQLite has it (migration 0032; PostgreSQL's stops at created_at)
        "ix_traces_ui_experiment",
        trace_attribute(EXPERIMENT_ATTRIBUTE),
        trace_attribute(VARIANT_ATTRIBUTE),
        Trace.status,
        Trace.duration_ms,
        Trace.created_at,
        Trace.error,
        Trace.prompt_tokens,
        Trace.completion_tokens,
        Trace.cost,
        Trace.id,
        **_present(EXPERIMENT_ATTRIBUTE),
    ),
    Index(
        "ix_traces_ui_prompt",
        trace_attribute(PROMPT_ATTRIBUTE),
        Trace.created_at,
        Trace.id,
        **_present(PROMPT_ATTRIBUTE),
    ),
    Index(
        "ix_traces_ui_flagged",
        Trace.created_at,
        Trace.id,
        sqlite_where=flagged_spans(),
        postgresql_where=flagged_spans(),
    ),
)


class UiDriftDay(Base):
    """One drift statistic of one model's traffic on one UTC day against its reference (``llmdock.monitor``'s
    drift tests), kept once the day has closed (``ui.drift_days``): the monitoring page charts these."""

    __tablename__ = "ui_drift_days"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # "YYYY-MM-DD", UTC
    statistic: Mapped[str] = mapped_column(String(200), primary_key=True)  # e.g. "input: length"
    test: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(
        Float
    )  # the test's statistic (None: infinite, e.g. an odds ratio)
    p_value: Mapped[float] = mapped_column(Float)
    adjusted_p: Mapped[float] = mapped_column(Float)  # Benjamini-Hochberg over the day's statistics
    drifted: Mapped[bool] = mapped_column()
    reference: Mapped[str] = mapped_column(String(200))  # what the reference window reads (a median, a rate)
    current: Mapped[str] = mapped_column(String(200))
    traces: Mapped[int] = mapped_column(Integer)  # the day's traces of the model
    computed_at: Mapped[datetime] = mapped_column()
