"""Provider credentials, stored sealed (``store.keyring``); and the progress of key rotations.

A secret's value is sealed with the context ``secret:<name>``, so a sealed value copied onto another
name does not open. Only names, key ids and times are ever listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from llmdock.errors import InvalidRequest, NotFound
from llmdock.store.engine import Store
from llmdock.store.keyring import Keyring, sealed_key_id
from llmdock.store.models import Base

NAME_MAX = 200


class Secret(Base):
    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(NAME_MAX), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column()


class KeyRotation(Base):
    """How far re-encrypting one table under one target key has got (one row per key and table)."""

    __tablename__ = "key_rotations"

    target_key: Mapped[str] = mapped_column(String(16), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str] = mapped_column(String(200), default="")
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    resealed: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column()


@dataclass(frozen=True)
class SecretInfo:
    name: str
    key_id: str
    updated_at: datetime


def secret_context(name: str) -> str:
    return f"secret:{name}"


def _check_name(name: str) -> None:
    if not name or len(name) > NAME_MAX or not name.isprintable() or name.strip() != name:
        raise InvalidRequest(
            f"a secret name is 1 to {NAME_MAX} printable characters without surrounding spaces",
            where="name",
        )


def set_secret(store: Store, keyring: Keyring, name: str, value: str) -> None:
    """Store (or replace) a secret, sealed under the keyring's current key."""
    _check_name(name)
    sealed = keyring.seal_text(value, secret_context(name))
    now = datetime.now(UTC)
    with store.session() as s, s.begin():
        row = s.get(Secret, name)
        if row is None:
            s.add(Secret(name=name, value=sealed, created_at=now, updated_at=now))
        else:
            row.value, row.updated_at = sealed, now


def get_secret(store: Store, keyring: Keyring, name: str) -> str:
    with store.session() as s:
        row = s.get(Secret, name)
    if row is None:
        raise NotFound(f"no secret named {name!r} (llmdock secrets list)")
    return keyring.open_text(row.value, secret_context(name))


def list_secrets(store: Store) -> list[SecretInfo]:
    with store.session() as s:
        rows = s.execute(select(Secret.name, Secret.value, Secret.updated_at).order_by(Secret.name)).all()
    return [SecretInfo(r.name, sealed_key_id(r.value), r.updated_at) for r in rows]


def delete_secret(store: Store, name: str) -> None:
    with store.engine.begin() as conn:
        deleted = conn.execute(delete(Secret).where(Secret.name == name)).rowcount
    if not deleted:
        raise NotFound(f"no secret named {name!r} (llmdock secrets list)")
