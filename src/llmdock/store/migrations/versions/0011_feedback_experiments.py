"""feedback on traces and A/B experiments (issue 19)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feedback_scores",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("correction", sa.Text, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_feedback_scores_trace_id", "feedback_scores", ["trace_id"])
    op.create_index("ix_feedback_scores_created_at", "feedback_scores", ["created_at"])
    op.create_index("ix_feedback_scores_subject", "feedback_scores", ["subject"])
    op.create_table(
        "experiment_definitions",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("variants", sa.JSON, nullable=False),
        sa.Column("match", sa.JSON, nullable=False),
        sa.Column("sticky", sa.String(16), nullable=False),
        sa.Column("guard", sa.JSON, nullable=False),
        sa.Column("starts_at", WHEN, nullable=False),
        sa.Column("ends_at", WHEN, nullable=True),
        sa.Column("winner", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_index("ix_experiment_definitions_status", "experiment_definitions", ["status"])
    op.create_index("ix_experiment_definitions_revision", "experiment_definitions", ["revision"])


def downgrade() -> None:
    op.drop_table("experiment_definitions")
    op.drop_table("feedback_scores")
