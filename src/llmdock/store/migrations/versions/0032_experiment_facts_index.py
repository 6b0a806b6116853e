"""the experiment page's index holds what the page adds up: the experiment, its variant, the status and the
latency in that order, then the time, error, tokens, cost and id (SQLite: a grouped count per variant and
status, and the latency at a rank, read from the index alone; PostgreSQL, whose btree rows cannot hold long
``error`` texts: the first five)

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

INDEX = "ix_traces_ui_experiment"
EXPERIMENT, VARIANT = "llmdock.experiment", "llmdock.experiment_variant"
SQLITE_ONLY: list[sa.TextClause | str] = ["error", "prompt_tokens", "completion_tokens", "cost", "id"]


def _attribute(name: str, dialect: str) -> sa.TextClause:
    """The expression ``store.ui_rows.trace_attribute`` writes (an index serves only the same expression)."""
    if dialect == "sqlite":
        return sa.text(f"json_extract(attributes, '$.\"{name}\"')")
    return sa.text(f"(attributes ->> '{name}')")


def _create(columns: list[sa.TextClause | str], dialect: str) -> None:
    present = sa.text(f"{_attribute(EXPERIMENT, dialect)} IS NOT NULL")
    op.create_index(INDEX, "traces", columns, sqlite_where=present, postgresql_where=present)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index(INDEX, table_name="traces")
    facts: list[sa.TextClause | str] = [
        _attribute(EXPERIMENT, dialect),
        _attribute(VARIANT, dialect),
        "status",
        "duration_ms",
        "created_at",
    ]
    _create([*facts, *(SQLITE_ONLY if dialect == "sqlite" else [])], dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.drop_index(INDEX, table_name="traces")
    _create([_attribute(EXPERIMENT, dialect), "created_at", "id"], dialect)
