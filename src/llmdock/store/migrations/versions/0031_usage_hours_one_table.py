"""usage_hours: one hourly table for every reader of usage: per API key as well (the dashboard's usage page),
the hour's day first in the key (its totals per day stream in key order; on SQLite the table is kept in key
order, WITHOUT ROWID); ui_trace_hours (the dashboard's own hours, which retention and erasure left untouched)
dropped.

Both tables are caches of the traces, and neither holds what the other lacks (deployment and cache hits; the
key): the table is made again empty, and the first query that needs an hour keeps it from the traces, which
retention and erasure have already thinned.

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

KEYS = {"day": 10, "team_id": 32, "model": 200, "api_key_id": 32, "deployment": 200, "hour": 13}
COUNTS = ("requests", "errors", "blocked", "cache_hits")
SUMS = ("sum_ms", "max_ms", "prompt_tokens", "completion_tokens", "cost")
UI_TOTALS = tuple(n for n in COUNTS + SUMS if n != "cache_hits")  # ui_trace_hours had no cache hits


def _totals(names: tuple[str, ...]) -> list[sa.Column]:  # type: ignore[type-arg]
    kind = {n: sa.Float for n in ("sum_ms", "max_ms", "cost")}
    return [sa.Column(n, kind.get(n, sa.Integer), nullable=False) for n in names]


def upgrade() -> None:
    # Both are caches: drop whichever exists (a store stamped 0030 by session 10's dashboard branch, before
    # 0029 joined the chain, has no usage_hours).
    tables = sa.inspect(op.get_bind()).get_table_names()
    for old in ("ui_trace_hours", "usage_hours"):
        if old in tables:
            op.drop_table(old)
    op.create_table(
        "usage_hours",
        *[sa.Column(name, sa.String(size), primary_key=True) for name, size in KEYS.items()],
        *_totals(COUNTS + SUMS),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("usage_hours")
    op.create_table(
        "usage_hours",
        *[
            sa.Column(n, sa.String(KEYS[n]), primary_key=True)
            for n in ("hour", "team_id", "model", "deployment")
        ],
        *_totals(COUNTS + SUMS),
    )
    op.create_table(
        "ui_trace_hours",
        *[
            sa.Column(n, sa.String(KEYS[n]), primary_key=True)
            for n in ("hour", "team_id", "model", "api_key_id")
        ],
        *_totals(UI_TOTALS),
    )
