"""usage_hours: hourly totals of the traces per team, model and deployment (store/usage_hours.py), read
by ``llmdock usage`` instead of the traces. Empty at first: the first query that needs an hour keeps it.

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

KEYS = {"hour": 13, "team_id": 32, "model": 200, "deployment": 200}
COUNTS = ("requests", "errors", "blocked", "cache_hits")
SUMS = ("sum_ms", "max_ms", "prompt_tokens", "completion_tokens", "cost")


def upgrade() -> None:
    op.create_table(
        "usage_hours",
        *[sa.Column(name, sa.String(size), primary_key=True) for name, size in KEYS.items()],
        *[sa.Column(name, sa.Integer, nullable=False) for name in COUNTS],
        *[
            sa.Column(name, sa.Integer if name.endswith("tokens") else sa.Float, nullable=False)
            for name in SUMS
        ],
    )


def downgrade() -> None:
    op.drop_table("usage_hours")
