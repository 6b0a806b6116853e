"""kb_memory.covers_to: a session's summary row says which of its turns it summarises (the memory stage)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kb_memory") as batch:
        batch.add_column(sa.Column("covers_to", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kb_memory") as batch:
        batch.drop_column("covers_to")
