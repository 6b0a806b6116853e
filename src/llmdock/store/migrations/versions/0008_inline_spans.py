"""spans on their trace's row, as JSON: a trace is written as one row

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_SQLITE_GATHER = """
UPDATE traces SET spans = COALESCE((
    SELECT json_group_array(json_object(
        'name', name, 'started_at', replace(substr(started_at, 1, 26), ' ', 'T') || '+00:00', 'duration_ms', duration_ms,
        'status', status, 'attributes', json(attributes)))
    FROM (SELECT * FROM spans WHERE spans.trace_id = traces.id ORDER BY seq)
), '[]')
"""
_PG_GATHER = """
UPDATE traces SET spans = COALESCE((
    SELECT json_agg(json_build_object(
        'name', name, 'started_at', started_at AT TIME ZONE 'UTC', 'duration_ms', duration_ms,
        'status', status, 'attributes', attributes) ORDER BY seq)
    FROM spans WHERE spans.trace_id = traces.id
), '[]'::json)
"""
_SQLITE_SPREAD = """
CREATE TABLE spans_down AS
SELECT traces.id AS trace_id, CAST(s.key AS INTEGER) AS seq, json_extract(s.value, '$.name') AS name,
       replace(substr(json_extract(s.value, '$.started_at'), 1, 26), 'T', ' ') AS started_at,
       json_extract(s.value, '$.duration_ms') AS duration_ms, json_extract(s.value, '$.status') AS status,
       json(json_extract(s.value, '$.attributes')) AS attributes
FROM traces, json_each(traces.spans) AS s
"""
_PG_SPREAD = """
CREATE TABLE spans_down AS
SELECT traces.id AS trace_id, s.n - 1 AS seq, s.v->>'name' AS name,
       (s.v->>'started_at')::timestamptz AS started_at, (s.v->>'duration_ms')::float AS duration_ms,
       s.v->>'status' AS status, s.v->'attributes' AS attributes
FROM traces, json_array_elements(traces.spans) WITH ORDINALITY AS s(v, n)
"""


def _spans_table() -> None:
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
    sqlite = op.get_bind().dialect.name == "sqlite"
    # Spread into a table of their own first: on SQLite, dropping the column copies the traces table, and
    # dropping the old copy would cascade to a spans table that referenced it.
    op.execute(_SQLITE_SPREAD if sqlite else _PG_SPREAD)
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("spans")
    _spans_table()
    columns = "trace_id, seq, name, started_at, duration_ms, status, attributes"
    op.execute(f"INSERT INTO spans ({columns}) SELECT {columns} FROM spans_down")
    op.drop_table("spans_down")
