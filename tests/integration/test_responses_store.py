"""Stored Responses API answers in SQLite and PostgreSQL: kept as given, found only by their own team."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llmdock.errors import NotFound
from llmdock.store import Store
from llmdock.store.models import StoredResponse
from llmdock.store.responses import delete_response, load_response, responses_of, save_response

DATA = {
    "response": {"id": "resp_1", "output": [{"type": "message", "content": [{"text": "Grüße, 東京 🌸"}]}]},
    "conversation": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    "earlier": 0,
}


def row(response_id: str, team: str, subject: str = "ana") -> StoredResponse:
    return StoredResponse(
        id=response_id,
        created_at=datetime.now(UTC),
        team_id=team,
        api_key_id="k1",
        subject=subject,
        model="m",
        previous_response_id="",
        data={**DATA, "response": {**DATA["response"], "id": response_id}},
    )


def test_a_stored_response_is_read_and_deleted_by_its_team_only(db_url: str) -> None:
    store = Store(db_url)
    save_response(store, row("resp_1", "blue"))
    save_response(store, row("resp_2", "red", subject="bob"))
    assert load_response(store, "resp_1", "blue")["response"]["output"] == DATA["response"]["output"]
    with pytest.raises(NotFound, match="'resp_1' not found") as info:
        load_response(store, "resp_1", "red", "previous_response_id")
    assert info.value.param == "previous_response_id"
    with pytest.raises(NotFound):
        delete_response(store, "resp_1", "red")
    assert [r.id for r in responses_of(store, {"ana"})] == ["resp_1"]
    delete_response(store, "resp_1", "blue")
    with pytest.raises(NotFound):
        load_response(store, "resp_1", "blue")
    assert load_response(store, "resp_2", "red")["earlier"] == 0
    store.close()
