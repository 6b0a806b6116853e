"""usage columns on traces: deployment, cost, cache

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("traces") as batch:
        batch.add_column(sa.Column("deployment", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("cost", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("cache", sa.String(16), nullable=False, server_default=""))
    op.create_index("ix_traces_deployment", "traces", ["deployment"])


def downgrade() -> None:
    op.drop_index("ix_traces_deployment", "traces")
    with op.batch_alter_table("traces") as batch:
        batch.drop_column("cache")
        batch.drop_column("cost")
        batch.drop_column("deployment")
