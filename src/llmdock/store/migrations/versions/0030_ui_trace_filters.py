"""the dashboard: partial indexes on traces for the experiment page and the prompt and "flagged" filters, and
the daily drift points its monitoring chart draws (ui_drift_days)

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

ATTRIBUTE_INDEXES = {
    "ix_traces_ui_experiment": "llmdock.experiment",
    "ix_traces_ui_prompt": "llmdock.prompt_template",
}
FLAGGED = ('"flagged":true', '"flagged": true')


def _attribute(name: str, dialect: str) -> str:
    """The expression ``store.ui_rows.trace_attribute`` writes (an index serves only the same expression)."""
    if dialect == "sqlite":
        return f"json_extract(attributes, '$.\"{name}\"')"
    return f"(attributes ->> '{name}')"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for index, name in ATTRIBUTE_INDEXES.items():
        present = sa.text(f"{_attribute(name, dialect)} IS NOT NULL")
        op.create_index(
            index,
            "traces",
            [sa.text(_attribute(name, dialect)), "created_at", "id"],
            sqlite_where=present,
            postgresql_where=present,
        )
    # text() would read ":true" as a bound parameter: the colon is escaped
    patterns = (p.replace(":", "\\:") for p in FLAGGED)
    flagged = sa.text(" OR ".join(f"CAST(spans AS VARCHAR) LIKE '%{p}%'" for p in patterns))
    op.create_index(
        "ix_traces_ui_flagged",
        "traces",
        ["created_at", "id"],
        sqlite_where=flagged,
        postgresql_where=flagged,
    )
    op.create_table(
        "ui_drift_days",
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("statistic", sa.String(200), primary_key=True),
        sa.Column("test", sa.String(100), nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("p_value", sa.Float, nullable=False),
        sa.Column("adjusted_p", sa.Float, nullable=False),
        sa.Column("drifted", sa.Boolean, nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("current", sa.String(200), nullable=False),
        sa.Column("traces", sa.Integer, nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ui_drift_days")
    for index in (*ATTRIBUTE_INDEXES, "ix_traces_ui_flagged"):
        op.drop_index(index, table_name="traces")
