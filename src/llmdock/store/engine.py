"""The Store: one SQLAlchemy engine, migrated by Alembic to the newest schema when opened.

A database already at the newest revision is recognised without Alembic (reading its ``alembic_version``
row and the revision lines of the migration files), so opening a store costs no Alembic import and no
loading of every migration script: about a quarter of a second of each CLI command's start-up.
"""

from __future__ import annotations

import re
import threading
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from llmdock.errors import StoreUnavailable
from llmdock.store.keyring import Keyring

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# ``revision = "0030"`` / ``down_revision = "0029"`` as Alembic writes them (annotated or not)
_REVISION_LINE = re.compile(
    r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(?:\"([^\"]*)\"|'([^']*)'|None)\s*$", re.M
)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 3})


def alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(files("llmdock.store").joinpath("migrations")))
    cfg.attributes["engine"] = engine
    return cfg


class Store:
    """Where llmdock keeps its records. SQLite by default; PostgreSQL through ``LLMDOCK_DATABASE_URL``."""

    def __init__(self, url: str, *, migrate: bool = True, keyring: Keyring | None = None) -> None:
        self.url = url
        self.keyring = keyring  # opens encrypted values (trace bodies, secrets) for the queries
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.migrated = False
        # /ready (a worker thread) and the trace writer's thread may both migrate a store opened while
        # the database was down; two concurrent upgrades of one database fail, so they take turns.
        self._migrate_lock = threading.Lock()
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        with self._migrate_lock:
            if self._at_head():
                self.migrated = True
                return
            from alembic import command

            try:
                command.upgrade(alembic_config(self.engine), "head")
            except SQLAlchemyError as exc:
                raise StoreUnavailable(
                    f"cannot migrate the store: {_short(exc)}", where=self.safe_url
                ) from None
            self.migrated = True

    def _at_head(self) -> bool:
        """Whether the database's one ``alembic_version`` row is the newest revision; False whenever unsure
        (no such table, several rows, migration files that do not say their revisions plainly)."""
        head = script_head()
        if head is None:
            return False
        try:
            with self.engine.connect() as conn:
                versions: list[Any] = list(
                    conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
                )
        except SQLAlchemyError:
            return False
        return [str(v) for v in versions] == [head]

    def session(self) -> Session:
        return self.sessions()

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"store unreachable: {_short(exc)}", where=self.safe_url) from None

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()


def script_head() -> str | None:
    """The newest revision of the migration scripts, read from their ``revision`` and ``down_revision``
    lines without importing them; None when a script does not state both plainly or the chain has not
    exactly one head (Alembic, which imports them, then decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in files("llmdock.store").joinpath("migrations", "versions").iterdir():
        if not script.name.endswith(".py") or script.name == "__init__.py":
            continue
        found = {m[0]: m[1] or m[2] or None for m in _REVISION_LINE.findall(script.read_text())}
        if set(found) != {"revision", "down_revision"} or not found["revision"]:
            return None
        revisions.add(str(found["revision"]))
        if found["down_revision"]:
            parents.add(str(found["down_revision"]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _short(exc: BaseException) -> str:
    msg = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__
