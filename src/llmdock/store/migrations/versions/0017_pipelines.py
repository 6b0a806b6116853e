"""pipelines: step attempts and cache keys, schedules and their claimed slots (llmdock jobs)

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_steps", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.add_column("job_steps", sa.Column("cache_key", sa.String(64), nullable=False, server_default=""))
    op.add_column("job_steps", sa.Column("cached_from", sa.String(32), nullable=False, server_default=""))
    op.create_index("ix_job_steps_cache_key", "job_steps", ["cache_key"])
    op.create_table(
        "job_schedules",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("tz", sa.String(64), nullable=False),
        sa.Column("misfire", sa.String(16), nullable=False),
        sa.Column("grace_s", sa.Float, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "job_schedule_fires",
        sa.Column(
            "schedule_id",
            sa.String(32),
            sa.ForeignKey("job_schedules.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("slot", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("job_schedule_fires")
    op.drop_table("job_schedules")
    op.drop_index("ix_job_steps_cache_key", "job_steps")
    for column in ("cached_from", "cache_key", "attempts"):
        op.drop_column("job_steps", column)
