"""The migrations build exactly the tables the models declare: a table or column added to a model without its
Alembic migration (or the other way round) fails here rather than on a user's database."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import llmdock.store
from llmdock.store import Store
from llmdock.store.models import Base
from llmdock.store.trace_search import include_name


def test_migrations_match_the_models(tmp_path: Path) -> None:
    for mod in pkgutil.iter_modules(llmdock.store.__path__):  # every module that declares a table
        if mod.name != "migrations":
            importlib.import_module(f"llmdock.store.{mod.name}")
    store = Store(f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_name": include_name})
            diff = compare_metadata(context, Base.metadata)
    finally:
        store.close()
    assert diff == []
