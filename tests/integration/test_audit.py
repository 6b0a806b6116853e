"""The audit log's hash chain: every edit, removal and reordering done directly in the database is named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, text, update

from llmdock.store import Store, audit
from llmdock.store.models import AuditRow


def _filled(store: Store, n: int = 6) -> None:
    for i in range(n):
        audit.append(store, f"test.action{i}", actor="tester", target=f"t{i}", source="here", after={"i": i})


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def test_intact_chain_verifies(store: Store) -> None:
    _filled(store)
    result = audit.verify(store)
    assert result.ok
    assert result.rows == 6
    assert result.head_seq == 6
    assert audit.verify(store, expect_head=result.head_hash).ok


def test_edited_row_is_named(store: Store) -> None:
    _filled(store)
    with store.session() as s, s.begin():
        s.execute(update(AuditRow).where(AuditRow.seq == 3).values(actor="someone else"))
    assert audit.verify(store).problems == [
        "row 3: content edited (test.action2 by someone else at " + _at(store, 3) + ")"
    ]


def test_edited_json_is_named(store: Store) -> None:
    _filled(store)
    with store.session() as s, s.begin():
        s.execute(update(AuditRow).where(AuditRow.seq == 2).values(after={"i": 99}))
    problems = audit.verify(store).problems
    assert len(problems) == 1
    assert problems[0].startswith("row 2: content edited")


def test_removed_row_is_named(store: Store) -> None:
    _filled(store)
    with store.session() as s, s.begin():
        s.execute(delete(AuditRow).where(AuditRow.seq == 4))
    assert audit.verify(store).problems == ["rows 4-4: removed"]


def test_removed_tail_is_named(store: Store) -> None:
    _filled(store)
    with store.session() as s, s.begin():
        s.execute(delete(AuditRow).where(AuditRow.seq >= 5))
    assert audit.verify(store).problems == ["rows 5-6: removed from the end"]


def test_reordered_rows_are_named(store: Store) -> None:
    _filled(store)
    with store.session() as s, s.begin():  # swap rows 2 and 3 by renumbering them
        s.execute(update(AuditRow).where(AuditRow.seq == 2).values(seq=1000))
        s.execute(update(AuditRow).where(AuditRow.seq == 3).values(seq=2))
        s.execute(update(AuditRow).where(AuditRow.seq == 1000).values(seq=3))
    problems = audit.verify(store).problems
    assert any(p.startswith("row 2: out of order") for p in problems), problems
    assert any(p.startswith("row 3: out of order") for p in problems), problems
    assert not any("edited" in p for p in problems)


def test_forged_chain_is_caught_by_a_recorded_head(store: Store) -> None:
    _filled(store)
    head = audit.verify(store).head_hash
    with store.session() as s, s.begin():
        s.execute(text("DELETE FROM audit_log"))
        s.execute(text("DELETE FROM audit_head"))
    _filled(store, 3)
    assert audit.verify(store).ok
    assert audit.verify(store, expect_head=head).problems[0].startswith("the expected head")


def _at(store: Store, seq: int) -> str:
    with store.session() as s:
        row = s.get(AuditRow, seq)
        assert row is not None
        return f"{row.at:%Y-%m-%d %H:%M:%S}"
