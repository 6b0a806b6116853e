"""Opening a store already at the newest revision asks nothing of Alembic (its import and the loading of every
migration script are most of a CLI command's store start-up); an older or new database is still migrated."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from llmdock.store import Store
from llmdock.store.engine import alembic_config, script_head


def version_of(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    engine = create_engine("sqlite://")
    assert script_head() == ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert script_head() is not None


def test_a_store_at_the_newest_revision_opens_without_alembic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'llmdock.db'}"
    Store(url).close()  # created and migrated by Alembic

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("Alembic was asked to upgrade a database already at head")

    monkeypatch.setattr(command, "upgrade", refuse)
    again = Store(url)
    try:
        assert again.migrated
        assert version_of(again) == [script_head()]
    finally:
        again.close()


def test_a_store_at_an_older_revision_is_still_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'llmdock.db'}"
    engine = create_engine(url)
    scripts = ScriptDirectory.from_config(alembic_config(engine))
    head = scripts.get_current_head()
    assert head is not None
    older = scripts.get_revision(head).down_revision
    assert isinstance(older, str)
    command.upgrade(alembic_config(engine), older)
    engine.dispose()
    store = Store(url)
    try:
        assert version_of(store) == [head]
    finally:
        store.close()
