"""trace text search: an FTS5 trigram index on SQLite, pg_trgm GIN indexes on PostgreSQL (store/trace_search.py)

SQLite: ``traces_fts`` indexes ``output || ' ' || input`` of each trace by its rowid, as an external-content
FTS5 table over the view ``traces_fts_text`` (so ``INSERT INTO traces_fts(traces_fts) VALUES('rebuild')``
rebuilds it from the traces, e.g. after a VACUUM renumbered rowids); triggers keep it current on insert,
delete and update of the bodies. A later migration that rebuilds ``traces`` in batch mode (copy and rename)
drops these triggers and must create them again and rebuild. Skipped when SQLite lacks FTS5.

PostgreSQL: ``pg_trgm`` (created if the server has it; a trusted extension since PostgreSQL 13) and GIN
trigram indexes on ``output`` and ``CAST(input AS VARCHAR)``; without the extension the indexes are skipped.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

BODY = "{t}.output || ' ' || {t}.input"
SQLITE_UP = [
    f"CREATE VIEW traces_fts_text AS SELECT rowid, {BODY.format(t='traces')} AS body FROM traces",
    "CREATE VIRTUAL TABLE traces_fts USING fts5(body, content='traces_fts_text', content_rowid='rowid', "
    "tokenize='trigram')",
    "CREATE TRIGGER traces_fts_insert AFTER INSERT ON traces BEGIN "
    f"INSERT INTO traces_fts(rowid, body) VALUES (new.rowid, {BODY.format(t='new')}); END",
    "CREATE TRIGGER traces_fts_delete AFTER DELETE ON traces BEGIN "
    f"INSERT INTO traces_fts(traces_fts, rowid, body) VALUES ('delete', old.rowid, {BODY.format(t='old')}); END",
    "CREATE TRIGGER traces_fts_update AFTER UPDATE OF output, input ON traces BEGIN "
    f"INSERT INTO traces_fts(traces_fts, rowid, body) VALUES ('delete', old.rowid, {BODY.format(t='old')}); "
    f"INSERT INTO traces_fts(rowid, body) VALUES (new.rowid, {BODY.format(t='new')}); END",
    "INSERT INTO traces_fts(traces_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS traces_fts_update",
    "DROP TRIGGER IF EXISTS traces_fts_delete",
    "DROP TRIGGER IF EXISTS traces_fts_insert",
    "DROP TABLE IF EXISTS traces_fts",
    "DROP VIEW IF EXISTS traces_fts_text",
]
PG_INDEXES = {"ix_traces_output_trgm": "output", "ix_traces_input_trgm": "(CAST(input AS VARCHAR))"}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        options = {row[0] for row in bind.exec_driver_sql("PRAGMA compile_options")}
        if "ENABLE_FTS5" in options:
            for statement in SQLITE_UP:
                op.execute(statement)
    elif bind.dialect.name == "postgresql":
        available = bind.execute(
            sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")
        ).first()
        if available is not None:
            op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            for name, column in PG_INDEXES.items():
                op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON traces USING gin ({column} gin_trgm_ops)")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in SQLITE_DOWN:
            op.execute(statement)
    elif bind.dialect.name == "postgresql":
        for name in PG_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
