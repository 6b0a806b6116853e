"""online evaluation's cursor and claims, drift's stored reference statistics (llmdock monitor)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_eval_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
    )
    op.create_table(
        "monitor_eval_claims",
        sa.Column("rule", sa.String(200), primary_key=True),
        sa.Column("trace_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("trace_created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text, nullable=False),
    )
    op.create_table(
        "monitor_drift_references",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("traces", sa.Integer, nullable=False),
        sa.Column("window_s", sa.Float, nullable=False),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("stats", sa.JSON, nullable=False),
        sa.Column("embeddings", sa.LargeBinary, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("monitor_drift_references")
    op.drop_table("monitor_eval_claims")
    op.drop_table("monitor_eval_cursors")
