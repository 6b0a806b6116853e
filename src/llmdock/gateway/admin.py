"""The admin API under /admin: keys, users, teams, the audit log, traces and usage, data export/erasure
(and the registries, from ``admin_registry``).

Every route needs a key (the auth middleware; ``observe`` for GET traces/usage, ``admin`` for the rest).
Changes are audited with the calling key as actor and the client address as source. Store work runs in
threads, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response

from llmdock.auth.keys import Directory
from llmdock.errors import InvalidRequest
from llmdock.gateway.admin_registry import registry_router
from llmdock.gateway.deps import RuntimeDep, actor_of, body_of, runtime_of
from llmdock.gateway.http import JSONResponse
from llmdock.gateway.openapi import json_body
from llmdock.gateway.schemas import StoredCount
from llmdock.privacy import gdpr
from llmdock.runtime import Runtime
from llmdock.store import audit
from llmdock.store.access_views import key_view, team_view, user_view
from llmdock.store.traces import get_trace, list_traces

MAX_DAYS = 36_500  # a hundred years: longer periods overflow dates
RowLimit = Annotated[int, Query(ge=1, le=10_000)]
Days = Annotated[int, Query(ge=1, le=MAX_DAYS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Limits(_Body):
    rpm: StoredCount | None = None
    tpm: StoredCount | None = None
    budget: float | None = Field(default=None, gt=0)
    budget_period: str = "month"


class KeyBody(_Limits):
    user: str
    name: str = ""
    models: list[str] | None = None
    routes: list[str] | None = None
    prompts: list[str] | None = None
    expires_in_days: float | None = Field(default=None, gt=0, le=MAX_DAYS)


class UserBody(_Body):
    name: str
    role: str = "developer"
    kind: str = "user"
    team: str | None = None
    org: str = "default"


class TeamBody(_Limits):
    name: str
    org: str = "default"


class SubjectBody(_Body):
    subject: str = Field(min_length=1)


class EraseBody(_Body):
    """One data subject, or one conversation (``session``, with ``team`` when the id is in several teams)."""

    subject: str | None = Field(default=None, min_length=1)
    session: str | None = Field(default=None, min_length=1)
    team: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_target(self) -> EraseBody:
        if (self.subject is None) == (self.session is None):
            raise ValueError("give exactly one of subject and session")
        if self.team is not None and self.session is None:
            raise ValueError("team goes with session")
        return self


def directory(runtime: Runtime) -> Directory:
    if runtime.auth.directory is None:
        raise InvalidRequest("the admin API needs the store")
    return runtime.auth.directory


def listed(rows: Sequence[Any], view: Callable[..., dict[str, Any]]) -> Response:
    """An OpenAI-style list of ``rows``, each shown by ``view``."""
    return JSONResponse({"object": "list", "data": [view(r) for r in rows]})


Handler = Callable[..., Any]
Named = TypeVar("Named", UserBody, TeamBody)


def list_route(fetch: Callable[[Directory], Sequence[Any]], view: Callable[..., dict[str, Any]]) -> Handler:
    """GET a directory listing (keys, users, teams)."""

    async def handler(runtime: RuntimeDep) -> Response:
        return listed(await asyncio.to_thread(fetch, directory(runtime)), view)

    return handler


def create_route(
    body_type: type[Named], create: Callable[..., Any], view: Callable[[Any], dict[str, Any]]
) -> Handler:
    """POST a new directory row (user, team) from a body whose fields are ``create``'s arguments."""

    async def handler(request: Request) -> Response:
        runtime = runtime_of(request)
        body = await body_of(request, body_type, runtime)
        fields = body.model_dump(exclude={"name"})
        row = await asyncio.to_thread(create, directory(runtime), body.name, actor_of(request), **fields)
        return JSONResponse(view(row), status_code=201)

    return handler


async def create_key(request: Request) -> Response:
    runtime = runtime_of(request)
    body = await body_of(request, KeyBody, runtime)
    expires = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    fields = body.model_dump(exclude={"user", "expires_in_days"})
    clear, key = await asyncio.to_thread(
        directory(runtime).create_key, body.user, actor_of(request), **fields, expires_at=expires
    )
    runtime.auth.refresh()
    return JSONResponse({"key": clear, **key_view(key)}, status_code=201)


async def revoke_key(ref: str, request: Request, runtime: RuntimeDep) -> Response:
    key = await asyncio.to_thread(directory(runtime).revoke, ref, actor_of(request))
    runtime.auth.refresh()
    return JSONResponse(key_view(key))


async def rotate_key(ref: str, request: Request, runtime: RuntimeDep) -> Response:
    clear, key = await asyncio.to_thread(directory(runtime).rotate, ref, actor_of(request))
    runtime.auth.refresh()
    return JSONResponse({"key": clear, **key_view(key)}, status_code=201)


async def audit_rows(runtime: RuntimeDep, limit_rows: RowLimit = 50, action: str | None = None) -> Response:
    rows = await asyncio.to_thread(audit.list_rows, directory(runtime).store, limit=limit_rows, action=action)
    return listed(rows, audit.row_view)


async def audit_verify(runtime: RuntimeDep) -> Response:
    result = await asyncio.to_thread(audit.verify, directory(runtime).store)
    return JSONResponse(
        {"ok": result.ok, "rows": result.rows, "head": result.head_hash, "problems": result.problems},
        status_code=200 if result.ok else 409,
    )


async def traces(runtime: RuntimeDep, limit_rows: RowLimit = 20, model: str | None = None) -> Response:
    rows = await asyncio.to_thread(list_traces, directory(runtime).store, limit=limit_rows, model=model)
    return listed(rows, lambda r: gdpr.trace_view(r, []))


async def trace(trace_id: str, runtime: RuntimeDep) -> Response:
    row, spans = await asyncio.to_thread(get_trace, directory(runtime).store, trace_id)
    return JSONResponse(gdpr.trace_view(row, spans))


async def usage(runtime: RuntimeDep, days: Days = 7, model: str | None = None) -> Response:
    from llmdock.store.usage import usage_summary

    rows = await asyncio.to_thread(usage_summary, directory(runtime).store, days=days, model=model)
    return listed(rows, asdict)


def subject_route(act: Callable[..., dict[str, Any]]) -> Handler:
    """POST a GDPR request about one data subject (export)."""

    async def handler(request: Request) -> Response:
        runtime = runtime_of(request)
        body = await body_of(request, SubjectBody, runtime)
        service = runtime.auth
        result = await asyncio.to_thread(
            act, directory(runtime).store, body.subject, actor_of(request), service.secret
        )
        return JSONResponse(result)

    return handler


async def erase(request: Request) -> Response:
    """POST /admin/data/erase: a data subject's data (as ``llmdock data erase --subject``) or one conversation
    (``--session``, with ``team``)."""
    runtime = runtime_of(request)
    body = await body_of(request, EraseBody, runtime)
    store, actor, secret = directory(runtime).store, actor_of(request), runtime.auth.secret
    if body.session is not None:
        result = await asyncio.to_thread(
            gdpr.erase_session, store, body.session, actor, secret, body.team, where="team"
        )
    else:
        result = await asyncio.to_thread(gdpr.erase_subject, store, body.subject or "", actor, secret)
        runtime.auth.refresh()
    return JSONResponse(result)


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("list_keys", "GET", "/keys", list_route(Directory.keys, lambda row: key_view(*row))),
    ("create_key", "POST", "/keys", create_key),
    ("revoke_key", "POST", "/keys/{ref}/revoke", revoke_key),
    ("rotate_key", "POST", "/keys/{ref}/rotate", rotate_key),
    ("list_users", "GET", "/users", list_route(Directory.users, user_view)),
    ("create_user", "POST", "/users", create_route(UserBody, Directory.create_user, user_view)),
    ("list_teams", "GET", "/teams", list_route(Directory.teams, team_view)),
    ("create_team", "POST", "/teams", create_route(TeamBody, Directory.create_team, team_view)),
    ("audit_rows", "GET", "/audit", audit_rows),
    ("audit_verify", "GET", "/audit/verify", audit_verify),
    ("traces", "GET", "/traces", traces),
    ("trace", "GET", "/traces/{trace_id}", trace),
    ("usage", "GET", "/usage", usage),
    ("export", "POST", "/data/export", subject_route(gdpr.export_subject)),
    ("erase", "POST", "/data/erase", erase),
]
BODIES: dict[str, type[BaseModel]] = {  # the body each POST route parses (for the OpenAPI document)
    "/keys": KeyBody,
    "/users": UserBody,
    "/teams": TeamBody,
    "/data/export": SubjectBody,
    "/data/erase": EraseBody,
}
admin_router = APIRouter(prefix="/admin")
for _name, _method, _path, _handler in ROUTES:
    _body = BODIES.get(_path) if _method == "POST" else None
    _extra = json_body(_body) if _body else None
    admin_router.add_api_route(_path, _handler, methods=[_method], name=_name, openapi_extra=_extra)
admin_router.include_router(registry_router)
