"""Text search over the stored (redacted) trace bodies: a case-insensitive substring of the answer
(``output``) or of the request's JSON (``input``), served by an index (migration 0023).

- SQLite: an FTS5 table with the trigram tokenizer (``traces_fts``, kept by triggers on ``traces``): a quoted
  phrase of three characters or more matches exactly the rows holding it as a substring, case folded. The
  matches are read first (at most ``FTS_ROWS``); when there are that many the word is common, and reading the
  newest rows until a page is full is faster than sorting every match, so the plain substring test is used.
- PostgreSQL: GIN ``pg_trgm`` indexes on ``output`` and ``CAST(input AS VARCHAR)``, which serve the substring
  test itself (``ILIKE``). ``newest_matching`` (a page, newest first) first reads the newest ``PROBE_ROWS``
  rows the page's other filters allow: a common word fills the page there. Else the ids of at most
  ``PG_ID_ROWS`` matches, unordered (the indexes' bitmap: a word found nowhere costs milliseconds). Past that
  the matches are many and spread over the table, and ordering all of them by time reads each one's page; so
  the page is looked for in growing time windows back from the newest row, each run as a bitmap AND of the
  trigram indexes and the time index (``_bitmap_only``: left alone, the planner walks the time index and tests
  every row), which reads only the pages of the window's matches. A window that fills the page holds the
  newest matches, since every row outside it is older.

Shorter texts, and bodies stored encrypted (``privacy.encrypt_bodies``), are matched by the substring test
alone, reading rows newest first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    String,
    and_,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from llmdock.store.models import Trace

FTS_TABLE = "traces_fts"
MIN_FTS_CHARS = 3  # the trigram tokenizer cannot match less
FTS_ROWS = 2000
PG_ID_ROWS = 500  # PostgreSQL: past this many matches, time windows read fewer pages than the ids' rows
PROBE_ROWS = 2000  # the newest rows tested first (a common word fills a page there)
MAX_GROWTH = 64  # a window grows at most this many times over the one before


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
        ids = _some_ids(session, needle, FTS_ROWS)
        return substring(needle) if ids is None else Trace.id.in_(ids)
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


def _some_ids(session: Session, needle: str, most: int) -> list[str] | None:
    """The ids of the traces holding ``needle`` if there are at most ``most``, else None."""
    ids = list(session.scalars(select(Trace.id).where(substring(needle)).limit(most + 1)))
    return None if len(ids) > most else ids


def newest_matching(session: Session, q: Select[Any], needle: str, limit: int) -> Sequence[Row[Any]]:
    """The rows of ``q`` — a query ordered newest first (``created_at``, then ``id``, descending) and limited
    to ``limit`` rows — whose trace holds ``needle``: exactly what ``q`` filtered by ``substring`` gives."""
    if session.get_bind().dialect.name != "postgresql" or len(needle) < MIN_FTS_CHARS:
        return session.execute(q.where(text_match(session, needle))).all()
    found = substring(needle)
    edge = q.with_only_columns(Trace.created_at.label("t")).limit(PROBE_ROWS).subquery()
    newest = select(func.max(edge.c.t), func.min(edge.c.t), func.count())
    top, bottom, rows = session.execute(newest).tuples().one()
    if rows < PROBE_ROWS:  # the other filters leave few rows: test them all
        return session.execute(q.where(found)).all()
    page = session.execute(q.where(found, Trace.created_at >= bottom)).all()
    if len(page) >= limit:
        return page
    ids = _some_ids(session, needle, PG_ID_ROWS)
    if ids is not None:
        return session.execute(q.where(Trace.id.in_(ids))).all()
    return _in_windows(session, q, found, limit, (top, bottom, len(page)))


def _in_windows(
    session: Session, q: Select[Any], found: ColumnElement[bool], limit: int, probe: tuple[Any, Any, int]
) -> Sequence[Row[Any]]:
    """``q`` filtered by ``found`` in growing windows ``[top - span, ...]``, each sized from the matches the one
    before held (twice what the page needs at that rate), until one fills the page or reaches the oldest row."""
    top, bottom, matches = probe
    oldest = session.scalar(q.with_only_columns(func.min(Trace.created_at)).order_by(None).limit(None))
    # The probe's rows may be a burst: at least the span its rows take at the table's average rate.
    stored = session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'traces'::regclass")) or 0
    span = max(
        top - bottom, (top - oldest) * (PROBE_ROWS / max(stored, PROBE_ROWS)), timedelta(milliseconds=1)
    )
    with _bitmap_only(session):
        while True:
            span *= min(MAX_GROWTH, max(2.0, 2 * limit / max(matches, 1)))
            if top - span <= oldest:
                return session.execute(q.where(found)).all()
            page = session.execute(q.where(found, Trace.created_at >= top - span)).all()
            if len(page) >= limit:
                return page
            matches = len(page)


@contextmanager
def _bitmap_only(session: Session) -> Iterator[None]:
    """PostgreSQL plans the session's queries with bitmap scans only, until the block ends (``SET LOCAL``:
    the transaction's settings, put back as they were)."""
    scans, seq = session.execute(
        text("SELECT current_setting('enable_indexscan'), current_setting('enable_seqscan')")
    ).one()
    switch = text(
        "SELECT set_config('enable_indexscan', :scans, true), set_config('enable_seqscan', :seq, true)"
    )
    session.execute(switch, {"scans": "off", "seq": "off"})
    try:
        yield
    finally:
        session.execute(switch, {"scans": scans, "seq": seq})
