"""spans on their trace's row, as JSON: a trace is written as one row

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Each span: {name, start_ms (after its trace's created_at), duration_ms, status, attributes}, exact to the
# microsecond (SQLite keeps times as 'YYYY-MM-DD HH:MM:SS.ffffff' text: whole seconds plus the digits).
_SQLITE_GATHER = """
UPDATE traces SET spans = COALESCE((
    SELECT json_group_array(json_object(
        'name', s.name,
        'start_ms', (CAST(strftime('%s', s.started_at) AS INTEGER)
                     - CAST(strftime('%s', traces.created_at) AS INTEGER)) * 1000.0
                    + (CAST(substr(s.started_at, 21, 6) AS INTEGER)
                       - CAST(substr(traces.created_at, 21, 6) AS INTEGER)) / 1000.0,
        'duration_ms', s.duration_ms, 'status', s.status, 'attributes', json(s.attributes)))
    FROM (SELECT * FROM spans WHERE spans.trace_id = traces.id ORDER BY seq) AS s
), '[]')
"""
_PG_GATHER = """
UPDATE traces SET spans = COALESCE((
    SELECT json_agg(json_build_object(
        'name', s.name, 'start_ms', EXTRACT(EPOCH FROM (s.started_at - traces.created_at)) * 1000,
        'duration_ms', s.duration_ms, 'status', s.status, 'attributes', s.attributes) ORDER BY s.seq)
    FROM spans AS s WHERE s.trace_id = traces.id
), '[]'::json)
"""


def _spans_table() -> sa.TableClause:
    op.create_table(
        "spans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), sa.ForeignKey("traces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
    )
    op.create_index("ix_spans_trace_id_seq", "spans", ["trace_id", "seq"])
    return sa.table(
        "spans",
        *(sa.column(c) for c in ("trace_id", "seq", "name", "duration_ms", "status")),
        sa.column("started_at", sa.DateTime(timezone=True)),
        sa.column("attributes", sa.JSON),
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("traces") as batch:
        batch.add_column(sa.Column("spans", sa.JSON, nullable=True))
    op.execute(_SQLITE_GATHER if sqlite else _PG_GATHER)
    with op.batch_alter_table("traces") as batch:
        batch.alter_column("spans", existing_type=sa.JSON, nullable=False)
    op.drop_index("ix_spans_trace_id_seq", table_name="spans")
    op.drop_table("spans")


def downgrade() -> None:
    # Read every span first: on SQLite, dropping the column copies the traces table, and dropping the old
    # copy would cascade to a spans table that referenced it.
    rows: list[dict[str, Any]] = []
    traces: list[tuple[str, Any, Any]] = [
        (r[0], r[1], r[2]) for r in op.get_bind().execute(sa.text("SELECT id, created_at, spans FROM traces"))
    ]
    for trace_id, created, spans in traces:
        base = created if isinstance(created, datetime) else datetime.fromisoformat(str(created))
        base = base.replace(tzinfo=UTC) if base.tzinfo is None else base
        for seq, span in enumerate(json.loads(spans) if isinstance(spans, str) else spans or []):
            at = base + timedelta(milliseconds=span["start_ms"])
            rows.append({"trace_id": trace_id, "seq": seq, "started_at": at, **_fields(span)})
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("spans")
    table = _spans_table()
    if rows:
        op.bulk_insert(table, rows)


def _fields(span: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "duration_ms", "status", "attributes")
    return {k: span.get(k, {} if k == "attributes" else "") for k in keys}
