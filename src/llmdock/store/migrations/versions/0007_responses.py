"""stored Responses API answers (GET /v1/responses/{id}, previous_response_id)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("api_key_id", sa.String(32), nullable=False, server_default=""),
        sa.Column("subject", sa.String(200), nullable=False, server_default=""),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_responses_created_at", "responses", ["created_at"])
    op.create_index("ix_responses_subject", "responses", ["subject"])


def downgrade() -> None:
    op.drop_table("responses")
