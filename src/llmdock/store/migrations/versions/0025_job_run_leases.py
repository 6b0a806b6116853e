"""job_runs.lease_owner/lease_until/error: a pipeline run is held by its runner's heartbeat; a run whose
lease ran out is `failed: runner lost` (or resumed by `llmdock jobs resume`)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("error", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("job_runs") as batch:
        batch.drop_column("error")
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
