"""Stored Responses API answers: written once, read and deleted by the team that made them.

The caller prepares what is stored (redaction and sealing are the privacy policy's, in the gateway); this
module keeps the rows and opens sealed data with the store's keyring. A response of another team is "not
found", exactly as one that never existed, so ids say nothing across teams.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from llmdock.errors import NotFound, StoreUnavailable
from llmdock.store.engine import Store, _short
from llmdock.store.keyring import SEALED, DecryptionError, Keyring, is_sealed
from llmdock.store.models import StoredResponse


def response_context(response_id: str) -> str:
    """What a stored response's sealed data is bound to (it opens only as this response's)."""
    return f"response:{response_id}"


def seal_data(keyring: Keyring, response_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {SEALED: keyring.seal_text(orjson.dumps(data).decode(), response_context(response_id))}


def open_data(keyring: Keyring | None, response_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """A stored response's data in the clear (as it is when it was not sealed)."""
    token = data.get(SEALED)
    if not is_sealed(token):
        return data
    if keyring is None:
        raise DecryptionError(
            "stored responses are encrypted and no key is configured (privacy.encryption_key_env)",
            where=f"response {response_id}",
        )
    opened: dict[str, Any] = orjson.loads(keyring.open_text(token, response_context(response_id)))
    return opened


@contextmanager
def _reachable(store: Store) -> Iterator[None]:
    try:
        yield
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"cannot reach the response store: {_short(exc)}") from None


def not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id {response_id!r} not found.", param=param)


def save_response(store: Store, row: StoredResponse) -> None:
    with _reachable(store), store.session() as s, s.begin():
        s.add(row)


def load_response(store: Store, response_id: str, team_id: str, param: str | None = None) -> dict[str, Any]:
    """The data of the team's response ``response_id`` (opened); NotFound naming ``param`` otherwise."""
    with _reachable(store), store.session() as s:
        row = s.scalar(
            select(StoredResponse).where(StoredResponse.id == response_id, StoredResponse.team_id == team_id)
        )
    if row is None:
        raise not_found(response_id, param)
    return open_data(store.keyring, row.id, row.data)


def delete_response(store: Store, response_id: str, team_id: str) -> None:
    """Delete the team's response ``response_id``; NotFound if the team has none of that id."""
    with _reachable(store), store.session() as s, s.begin():
        gone = s.execute(
            delete(StoredResponse).where(StoredResponse.id == response_id, StoredResponse.team_id == team_id)
        ).rowcount  # type: ignore[attr-defined]
    if not gone:
        raise not_found(response_id)


def responses_of(store: Store, subjects: set[str]) -> list[StoredResponse]:
    """Every stored response made for one of ``subjects`` (GDPR export), oldest first."""
    with _reachable(store), store.session() as s:
        return list(
            s.scalars(
                select(StoredResponse)
                .where(StoredResponse.subject.in_(subjects))
                .order_by(StoredResponse.created_at)
            )
        )
