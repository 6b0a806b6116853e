"""what each scan found, as its report shows it (llmdock scan report RUN)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_reports",
        sa.Column(
            "run_id", sa.String(32), sa.ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scan_reports")
