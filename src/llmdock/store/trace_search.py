"""Text search over the stored (redacted) trace bodies: a case-insensitive substring of the answer
(``output``) or of the request's JSON (``input``), served by an index (migration 0023).

- SQLite: an FTS5 table with the trigram tokenizer (``traces_fts``, kept by triggers on ``traces``): a quoted
  phrase of three characters or more matches exactly the rows holding it as a substring, case folded. The
  matches are read first (at most ``FTS_ROWS``); when there are that many the word is common, and reading the
  newest rows until a page is full is faster than sorting every match, so the plain substring test is used.
- PostgreSQL: GIN ``pg_trgm`` indexes on ``output`` and ``CAST(input AS VARCHAR)``, which serve the substring
  test itself (``ILIKE``). The same two steps: the ids of at most ``FTS_ROWS`` matches, unordered (the indexes'
  bitmap); past that, the substring test ordered by time, which the planner serves from the time index.

Shorter texts, and bodies stored encrypted (``privacy.encrypt_bodies``), are matched by the substring test
alone, reading rows newest first.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, String, and_, cast, literal_column, or_, select, text
from sqlalchemy.orm import Session

from llmdock.store.models import Trace

FTS_TABLE = "traces_fts"
MIN_FTS_CHARS = 3  # the trigram tokenizer cannot match less
FTS_ROWS = 2000


def is_search_table(name: str) -> bool:
    """The FTS5 table and its shadow tables (SQLite): kept by the migration's triggers, not by a model."""
    return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's filter: the search index's tables are the migration's, not a model's (left out of
    comparisons of the models with the database)."""
    return not (type_ == "table" and name is not None and is_search_table(name))


def substring(needle: str) -> ColumnElement[bool]:
    """The trace's answer or request JSON holds ``needle``, case-insensitively (``%`` and ``_`` literal)."""
    return or_(
        Trace.output.icontains(needle, autoescape=True),
        cast(Trace.input, String).icontains(needle, autoescape=True),
    )


def text_match(session: Session, needle: str) -> ColumnElement[bool]:
    """The condition for traces whose stored text holds ``needle``, using the search index where it helps."""
    dialect = session.get_bind().dialect.name
    if len(needle) < MIN_FTS_CHARS or dialect not in ("sqlite", "postgresql"):
        return substring(needle)
    if dialect == "postgresql":
        # Unordered, the pg_trgm indexes find a rare word's rows (or none) at once; ordered by time, the
        # planner may walk the time index through every row for a word that is nowhere.
        ids = list(session.scalars(select(Trace.id).where(substring(needle)).limit(FTS_ROWS + 1)))
        return substring(needle) if len(ids) > FTS_ROWS else Trace.id.in_(ids)
    found = session.execute(
        text("SELECT name FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": FTS_TABLE}
    ).first()
    if found is None:  # a SQLite built without FTS5: the migration left the table out
        return substring(needle)
    phrase = '"' + needle.replace('"', '""') + '"'
    rowids = list(
        session.scalars(
            text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q LIMIT :n"),
            {"q": phrase, "n": FTS_ROWS + 1},
        )
    )
    if len(rowids) > FTS_ROWS:
        return substring(needle)
    # The trigram match is the substring test up to case folding beyond ASCII; checking the few rows found
    # again gives exactly the answer the unindexed test gives.
    return and_(literal_column("traces.rowid").in_(rowids), substring(needle))
