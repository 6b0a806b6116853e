"""Usage and keys. Usage: requests, errors, tokens and cost by day (UTC), model, team and key over the last
week or month, of the viewer's team's traces (from the kept hourly totals, ``monitor_hours``). Keys (admins
only): every key with its owner and state; create one, revoke one, rotate one (a new key with the same owner,
scopes and limits; the old one revoked) through ``auth.keys.Directory``, audited as ``key.create`` /
``key.revoke`` with the signed-in key as actor. A new key is shown once, on the answer to the form."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmdock.auth.keys import Directory
from llmdock.errors import Forbidden, InvalidRequest
from llmdock.store.access_views import key_state
from llmdock.store.usage_hours import TOTALS, add
from llmdock.ui.labels import source_of
from llmdock.ui.monitor_hours import totals_by
from llmdock.ui.pages import Ui, chosen_period, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

PERIODS = {"7d": 7 * 24, "30d": 30 * 24}
DIMENSIONS = ("day", "model", "team", "key")


def usage_tables(
    totals: dict[str, dict[str, list[float]]], teams: dict[str, str], keys: dict[str, str]
) -> dict[str, list[Any]]:
    """Per dimension, (label, totals) rows: days newest first, the rest by cost, highest first; teams and keys
    by name."""
    names = {"team": (teams, "(no team)"), "key": (keys, "(no key)"), "model": ({}, "(none)")}
    out: dict[str, list[Any]] = {}
    for dim in DIMENSIONS:
        rows: dict[str, list[float]] = {}
        known, blank = names.get(dim, ({}, ""))
        for value, t in totals[dim].items():
            add(rows.setdefault(known.get(value, value or blank), [0.0] * len(TOTALS)), t)
        order = sorted(rows.items(), key=lambda kv: kv[0], reverse=True)
        if dim != "day":
            order.sort(key=lambda kv: (-kv[1][-1], -kv[1][0]))
        out[dim] = [(label, dict(zip(TOTALS, t, strict=True))) for label, t in order]
    return out


def directory_of(ui: Ui) -> Directory:
    if ui.runtime.auth.directory is None:
        raise InvalidRequest("keys need the store")
    return ui.runtime.auth.directory


def _names(ui: Ui) -> tuple[dict[str, str], dict[str, str]]:
    d = directory_of(ui)
    teams = {t.id: t.name for t in d.teams()}
    keys = {k.id: f"{k.prefix}… {k.name or u.name}".strip() for k, u in d.keys()}  # noqa: SIM118 (Directory.keys)
    return teams, keys


async def usage(request: Request, viewer: Viewer, ui: Ui) -> Response:
    hours_back, shown = chosen_period(request, PERIODS)
    totals = await asyncio.to_thread(totals_by, store_of(ui), viewer.scope, hours_back, DIMENSIONS)
    teams, keys = await asyncio.to_thread(_names, ui)
    tables = usage_tables(totals, teams, keys)
    total = [0.0] * len(TOTALS)
    for t in totals["day"].values():
        add(total, t)
    return render(
        request,
        "usage.html",
        viewer,
        **shown,
        tables=tables,
        total=dict(zip(TOTALS, total, strict=True)),
    )


def _admin(viewer: Viewer) -> None:
    if viewer.role != "admin":
        raise Forbidden(f"role {viewer.role!r} may not manage keys (it needs admin)")


def _key_rows(d: Directory) -> dict[str, Any]:
    now = datetime.now(UTC)
    rows = [(k, u, key_state(k, now)) for k, u in d.keys()]  # noqa: SIM118 (Directory.keys)
    rows.sort(key=lambda r: (r[2] != "active", -r[0].created_at.timestamp()))
    return {"keys": rows, "users": d.users()}


async def keys_page(request: Request, viewer: Viewer, ui: Ui, status: int = 200, **shown: Any) -> Response:
    _admin(viewer)
    data = await asyncio.to_thread(_key_rows, directory_of(ui))
    context = {"new_key": "", "new_for": "", "done": ""} | shown
    return render(request, "keys.html", viewer, status, **data, **context)


def _expiry(value: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        days = float(value)
    except ValueError:
        raise InvalidRequest(
            f"expires_days: not a number of days: {value[:20]!r}", param="expires_days"
        ) from None
    if not 0 < days <= 3650:
        raise InvalidRequest("expires_days: between 0 and 3650 days", param="expires_days")
    return datetime.now(UTC) + timedelta(days=days)


async def create_key(request: Request, viewer: Viewer, ui: Ui) -> Response:
    _admin(viewer)
    form = await request.form()
    user, name = str(form.get("user", "")).strip(), str(form.get("name", "")).strip()[:200]
    models = [m.strip() for m in str(form.get("models", "")).split(",") if m.strip()] or None
    expires = _expiry(str(form.get("expires_days", "")))
    clear, row = await asyncio.to_thread(
        directory_of(ui).create_key,
        user,
        viewer.actor(source_of(request)),
        name=name,
        models=models,
        expires_at=expires,
    )
    ui.runtime.auth.refresh()
    return await keys_page(request, viewer, ui, new_key=clear, new_for=f"{row.prefix} (user {user})")


async def revoke_key(request: Request, viewer: Viewer, ui: Ui) -> Response:
    _admin(viewer)
    form = await request.form()
    row = await asyncio.to_thread(
        directory_of(ui).revoke, str(form.get("key", "")), viewer.actor(source_of(request))
    )
    ui.runtime.auth.refresh()
    return await keys_page(request, viewer, ui, done=f"key {row.prefix} revoked")


async def rotate_key(request: Request, viewer: Viewer, ui: Ui) -> Response:
    _admin(viewer)
    form = await request.form()
    clear, row = await asyncio.to_thread(
        directory_of(ui).rotate, str(form.get("key", "")), viewer.actor(source_of(request))
    )
    ui.runtime.auth.refresh()
    return await keys_page(
        request, viewer, ui, new_key=clear, new_for=f"{row.prefix} (replaces the rotated key)"
    )


async def keys(request: Request, viewer: Viewer, ui: Ui) -> Response:
    return await keys_page(request, viewer, ui)


ROUTES: list[tuple[str, str, Any, bool]] = [
    ("/usage", "GET", usage, False),
    ("/keys", "GET", keys, False),
    ("/keys/create", "POST", create_key, True),
    ("/keys/revoke", "POST", revoke_key, True),
    ("/keys/rotate", "POST", rotate_key, True),
]
