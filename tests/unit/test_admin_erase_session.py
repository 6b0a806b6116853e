"""``POST /admin/data/erase`` with ``session``: one conversation goes through the admin API as through
``llmdock data erase --session``; a bad body is a 422 naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from llmdock.config import Settings
from llmdock.store.audit import Actor
from llmdock.store.kb_rows import KbMemoryRow
from llmdock.store.models import AuditRow, Trace
from tests.conftest import Gateway
from tests.integration.test_erase_session import seed

ADMIN = Actor("test", "admin-erase")


async def admin_gateway(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> tuple[Gateway, dict[str, str]]:
    gw: Gateway = await gateway_factory(make_settings(auth={"cache_ttl_s": 0}))
    d = gw.runtime.auth.directory
    d.create_user("root", ADMIN, role="admin")
    key, _ = d.create_key("root", ADMIN)
    gw.runtime.auth.refresh()
    return gw, {"authorization": f"Bearer {key}"}


async def test_the_admin_api_erases_one_conversation_of_a_named_team(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    gw, admin = await admin_gateway(gateway_factory, make_settings)
    store = gw.runtime.store
    seed(store)
    ambiguous = await gw.client.post("/admin/data/erase", json={"session": "chat-1"}, headers=admin)
    assert ambiguous.status_code == 400, ambiguous.text
    assert "'t1', 't2'" in ambiguous.text
    assert '"team"' in ambiguous.text or "team:" in ambiguous.text
    resp = await gw.client.post(
        "/admin/data/erase", json={"session": "chat-1", "team": "support"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    report = resp.json()
    assert report["team"] == "t1"
    assert (report["memory_turns_deleted"], report["traces_deleted"], report["feedback_deleted"]) == (4, 3, 1)
    assert report["session"].startswith("session:")
    assert "chat-1" not in resp.text
    with store.session() as s:
        left = set(s.scalars(select(Trace.id)))
        sessions = set(s.execute(select(KbMemoryRow.team_id, KbMemoryRow.session)))
        audited = list(s.scalars(select(AuditRow.action).where(AuditRow.action == "data.erase_session")))
    assert left == {"tr3", "tr4", "tr6"}
    assert sessions == {("t2", "chat-1"), ("t1", "chat-10")}
    assert audited == ["data.erase_session"]


async def test_an_erase_body_names_one_target(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    gw, admin = await admin_gateway(gateway_factory, make_settings)
    for body, says in [
        ({}, "exactly one of subject and session"),
        ({"subject": "ana", "session": "chat-1"}, "exactly one of subject and session"),
        ({"subject": "ana", "team": "support"}, "team goes with session"),
        ({"session": ""}, "session"),
    ]:
        resp = await gw.client.post("/admin/data/erase", json=body, headers=admin)
        assert resp.status_code == 422, (body, resp.text)
        assert says in resp.text, (body, resp.text)
    subject = await gw.client.post("/admin/data/erase", json={"subject": "nobody"}, headers=admin)
    assert subject.status_code == 200, subject.text
    assert subject.json()["traces_deleted"] == 0
