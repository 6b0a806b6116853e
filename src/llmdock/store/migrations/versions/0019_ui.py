"""the dashboard (llmdock.ui): browser sessions, hourly totals for the charts, and trace indexes for its filters and keyset pages

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TRACE_INDEXES = {
    "ix_traces_ui_model": ["model", "created_at", "id"],
    "ix_traces_ui_status": ["status", "created_at", "id"],
    "ix_traces_ui_team": ["team_id", "created_at", "id"],
}


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_prefix", sa.String(16), nullable=False),
        sa.Column("key_digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ui_sessions_key_prefix", "ui_sessions", ["key_prefix"])
    op.create_index("ix_ui_sessions_expires_at", "ui_sessions", ["expires_at"])
    op.create_table(
        "ui_trace_hours",
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("sum_ms", sa.Float, nullable=False),
        sa.Column("max_ms", sa.Float, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
    )
    for name, columns in TRACE_INDEXES.items():
        op.create_index(name, "traces", columns)


def downgrade() -> None:
    for name in TRACE_INDEXES:
        op.drop_index(name, table_name="traces")
    op.drop_table("ui_trace_hours")
    op.drop_table("ui_sessions")
