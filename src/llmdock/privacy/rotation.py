"""Key rotation: re-encrypt every stored encrypted value under the keyring's current key, resumably.

Each table is walked in primary-key order (a string or an integer key) in batches; each batch — its re-encrypted rows and the
table's progress row in ``key_rotations`` — commits in one transaction. A run that is killed loses at most
the batch it was in (rolled back, so still under the old key, which still opens it); the next run for the
same target key starts after the last committed batch. Values under any key in the keyring open at every
moment, because each value names its key id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Integer, delete, func, select, true, update
from sqlalchemy.sql.schema import Table

from llmdock.privacy.crypto import Keyring
from llmdock.store.engine import Store
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.kb_rows import KbMemoryRow, memory_context
from llmdock.store.keyring import SEALED, is_sealed, sealed_key_id
from llmdock.store.models import Trace
from llmdock.store.secret_rows import KeyRotation, Secret, secret_context

Progress = Callable[[str, int, int], None]  # (table, rows done, rows in all) after each batch


@dataclass(frozen=True)
class SealedColumn:
    """A column that may hold a sealed value: plain (the token) or JSON (``{"$sealed": token}``)."""

    name: str
    json: bool
    context: Callable[[Any], str]  # the row's primary key -> the sealing context


@dataclass(frozen=True)
class SealedTable:
    table: Table
    key: str  # the primary key column, a string or an integer
    columns: tuple[SealedColumn, ...]

    def after(self, cursor: str) -> ColumnElement[bool]:
        """The rows past the cursor (the last key done, kept as text in ``key_rotations``; empty: none)."""
        if not cursor:
            return true()
        key = self.table.c[self.key]
        return key > (int(cursor) if isinstance(key.type, Integer) else cursor)


def sealed_tables() -> list[SealedTable]:
    """Every place llmdock stores encrypted values; rotation covers exactly these."""
    return [
        SealedTable(
            Secret.__table__,  # type: ignore[arg-type]
            "name",
            (SealedColumn("value", False, secret_context),),
        ),
        SealedTable(
            Trace.__table__,  # type: ignore[arg-type]
            "id",
            (
                SealedColumn("input", True, lambda pk: f"trace:{pk}:input"),
                SealedColumn("output", False, lambda pk: f"trace:{pk}:output"),
            ),
        ),
        SealedTable(
            FeedbackRow.__table__,  # type: ignore[arg-type]
            "id",
            (
                SealedColumn("comment", False, lambda pk: f"feedback:{pk}:comment"),
                SealedColumn("correction", False, lambda pk: f"feedback:{pk}:correction"),
            ),
        ),
        SealedTable(
            KbMemoryRow.__table__,  # type: ignore[arg-type]
            "id",
            (SealedColumn("content", False, memory_context),),  # conversation memory (the memory stage)
        ),
    ]


@dataclass
class RotationResult:
    key_id: str
    rows: int = 0  # rows looked at in this run
    resealed: int = 0  # values re-encrypted in this run
    resumed: bool = False  # this run continued an interrupted one


def _reseal(keyring: Keyring, col: SealedColumn, pk: Any, value: Any) -> Any:
    """The value under the current key, or None if it needs no change."""
    if col.json:
        token = value.get(SEALED) if isinstance(value, dict) else None
        if is_sealed(token) and keyring.needs_rotation(token):
            return {SEALED: keyring.reseal(token, col.context(pk))}
        return None
    if is_sealed(value) and keyring.needs_rotation(value):
        return keyring.reseal(value, col.context(pk))
    return None


def rotate(
    store: Store, keyring: Keyring, *, batch_size: int = 200, progress: Progress | None = None
) -> RotationResult:
    """Re-encrypt what is not under the current key. Resumes an interrupted run for the same key; after a
    completed one, starts a fresh pass (which finds values written meanwhile by a process on the old key)."""
    result = RotationResult(keyring.current_id)
    now = datetime.now(UTC)
    tables = sealed_tables()
    with store.session() as s, s.begin():
        states = s.scalars(select(KeyRotation).where(KeyRotation.target_key == keyring.current_id)).all()
        if len(states) == len(tables) and all(st.done for st in states):
            s.execute(delete(KeyRotation).where(KeyRotation.target_key == keyring.current_id))
    for spec in tables:
        name = spec.table.name
        with store.session() as s, s.begin():
            state = s.get(KeyRotation, (keyring.current_id, name))
            if state is None:
                state = KeyRotation(target_key=keyring.current_id, table_name=name, updated_at=now)
                s.add(state)
            elif state.rows_done and not state.done:
                result.resumed = True
            cursor, done_before, finished = state.cursor or "", state.rows_done or 0, bool(state.done)
        if finished:
            continue
        key = spec.table.c[spec.key]
        cols: list[Column[Any]] = [spec.table.c[c.name] for c in spec.columns]
        with store.engine.connect() as conn:
            total = done_before + int(
                conn.scalar(select(func.count()).select_from(spec.table).where(spec.after(cursor))) or 0
            )
        done = done_before
        if progress is not None:
            progress(name, done, total)
        while True:
            with store.engine.begin() as conn:
                rows = conn.execute(
                    select(key, *cols).where(spec.after(cursor)).order_by(key).limit(batch_size)
                ).all()
                resealed = 0
                for row in rows:
                    changes = {}
                    for col, value in zip(spec.columns, row[1:], strict=True):
                        new = _reseal(keyring, col, row[0], value)
                        if new is not None:
                            changes[col.name] = new
                    if changes:
                        conn.execute(update(spec.table).where(key == row[0]).values(**changes))
                        resealed += len(changes)
                if rows:
                    cursor = str(rows[-1][0])
                conn.execute(
                    update(KeyRotation)
                    .where(KeyRotation.target_key == keyring.current_id, KeyRotation.table_name == name)
                    .values(
                        cursor=cursor,
                        rows_done=KeyRotation.rows_done + len(rows),
                        resealed=KeyRotation.resealed + resealed,
                        done=int(not rows),
                        updated_at=datetime.now(UTC),
                    )
                )
            result.rows += len(rows)
            result.resealed += resealed
            done += len(rows)
            if progress is not None:
                progress(name, done, max(total, done))
            if not rows:
                break
    return result


def key_usage(store: Store) -> dict[str, int]:
    """How many stored values are sealed under each key id (a full scan; for ``secrets status``)."""
    counts: dict[str, int] = {}
    for spec in sealed_tables():
        cols = [spec.table.c[c.name] for c in spec.columns]
        with store.engine.connect() as conn:
            for row in conn.execute(select(*cols)):
                for col, value in zip(spec.columns, row, strict=True):
                    token = value.get(SEALED) if col.json and isinstance(value, dict) else value
                    if is_sealed(token):
                        kid = sealed_key_id(token)
                        counts[kid] = counts.get(kid, 0) + 1
    return counts
