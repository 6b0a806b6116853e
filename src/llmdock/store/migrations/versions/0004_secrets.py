"""encrypted provider credentials (secrets) and the progress of key rotations

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "key_rotations",
        sa.Column("target_key", sa.String(16), primary_key=True),
        sa.Column("table_name", sa.String(64), primary_key=True),
        sa.Column("cursor", sa.String(200), nullable=False, server_default=""),
        sa.Column("rows_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("resealed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_rotations")
    op.drop_table("secrets")
