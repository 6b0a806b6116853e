"""the dashboard's hourly totals per team, model and key, with guard blocks and tokens (usage page, guard-block chart)

The kept hours are a cache of the traces: the table is made again empty, and the first view fills it.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

TOTALS = ("requests", "errors", "sum_ms", "max_ms", "cost")


def _column(name: str) -> sa.Column:  # type: ignore[type-arg]
    kind = sa.Float if name in ("sum_ms", "max_ms", "cost") else sa.Integer
    return sa.Column(name, kind, nullable=False)


def upgrade() -> None:
    op.drop_table("ui_trace_hours")
    op.create_table(
        "ui_trace_hours",
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("team_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("api_key_id", sa.String(32), primary_key=True),
        *[
            _column(n)
            for n in (
                "requests",
                "errors",
                "blocked",
                "sum_ms",
                "max_ms",
                "prompt_tokens",
                "completion_tokens",
                "cost",
            )
        ],
    )


def downgrade() -> None:
    op.drop_table("ui_trace_hours")
    op.create_table(
        "ui_trace_hours",
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("team_id", sa.String(32), primary_key=True),
        *[_column(n) for n in TOTALS],
    )
