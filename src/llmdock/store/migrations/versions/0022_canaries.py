"""provider canaries: definitions, runs and firings (llmdock canary)

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canary_canaries",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("suite_path", sa.Text, nullable=False),
        sa.Column("suite_sha256", sa.String(64), nullable=False),
        sa.Column("cron", sa.String(120), nullable=False),
        sa.Column("every", sa.String(32), nullable=False),
        sa.Column("schedule_id", sa.String(32), nullable=False),
        sa.Column("channels", sa.JSON, nullable=False),
        sa.Column("thresholds", sa.JSON, nullable=False),
        sa.Column("baseline_run", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "canary_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("canary", sa.String(100), nullable=False, index=True),
        sa.Column("eval_run", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("unchanged", sa.Float, nullable=True),
        sa.Column("findings", sa.JSON, nullable=False),
        sa.Column("firing_id", sa.Integer, nullable=True),
    )
    op.create_table(
        "canary_firings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("canary", sa.String(100), nullable=False, index=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("kinds", sa.JSON, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("repeats", sa.Integer, nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deliveries", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("canary_firings")
    op.drop_table("canary_runs")
    op.drop_table("canary_canaries")
