"""The admin API under /admin: keys, users, teams, the audit log, traces and usage, data export/erasure
(and the registries, from ``admin_registry``).

Every route needs a key (the auth middleware; ``observe`` for GET traces/usage, ``admin`` for the rest).
Changes are audited with the calling key as actor and the client address as source. Store work runs in
threads, off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from llmdock.auth.service import Principal
from llmdock.errors import InvalidRequest
from llmdock.gateway.admin_registry import build_registry_router
from llmdock.gateway.auth import client_address
from llmdock.gateway.http import JSONResponse, parse_body, read_body
from llmdock.privacy import gdpr
from llmdock.runtime import Runtime
from llmdock.store import audit
from llmdock.store.access_views import key_view, team_view, user_view
from llmdock.store.audit import Actor
from llmdock.store.traces import get_trace, list_traces


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Limits(_Body):
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    budget: float | None = Field(default=None, gt=0)
    budget_period: str = "month"


class KeyBody(_Limits):
    user: str
    name: str = ""
    models: list[str] | None = None
    routes: list[str] | None = None
    prompts: list[str] | None = None
    expires_in_days: float | None = Field(default=None, gt=0)


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


def build_admin_router(runtime: Runtime, limit: int) -> APIRouter:
    router = APIRouter(prefix="/admin")
    service = runtime.auth

    def directory() -> Any:
        if service.directory is None:
            raise InvalidRequest("the admin API needs the store")
        return service.directory

    def actor(request: Request) -> Actor:
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        return Actor(principal.actor if principal else "anonymous", client_address(request.scope))

    async def changed(result: Any) -> Any:
        service.refresh()
        return result

    @router.get("/keys")
    async def list_keys() -> Response:
        rows = await asyncio.to_thread(directory().keys)
        return JSONResponse({"object": "list", "data": [key_view(k, u) for k, u in rows]})

    @router.post("/keys")
    async def create_key(request: Request) -> Response:
        body = parse_body(await read_body(request, limit), KeyBody)
        expires = datetime.now(UTC) + timedelta(days=body.expires_in_days) if body.expires_in_days else None
        clear, key = await asyncio.to_thread(
            directory().create_key,
            body.user,
            actor(request),
            name=body.name,
            models=body.models,
            routes=body.routes,
            prompts=body.prompts,
            rpm=body.rpm,
            tpm=body.tpm,
            budget=body.budget,
            budget_period=body.budget_period,
            expires_at=expires,
        )
        await changed(None)
        return JSONResponse({"key": clear, **key_view(key)}, status_code=201)

    @router.post("/keys/{ref}/revoke")
    async def revoke_key(ref: str, request: Request) -> Response:
        key = await asyncio.to_thread(directory().revoke, ref, actor(request))
        return JSONResponse(key_view(await changed(key)))

    @router.post("/keys/{ref}/rotate")
    async def rotate_key(ref: str, request: Request) -> Response:
        clear, key = await asyncio.to_thread(directory().rotate, ref, actor(request))
        await changed(None)
        return JSONResponse({"key": clear, **key_view(key)}, status_code=201)

    @router.get("/users")
    async def list_users() -> Response:
        users = await asyncio.to_thread(directory().users)
        return JSONResponse({"object": "list", "data": [user_view(u) for u in users]})

    @router.post("/users")
    async def create_user(request: Request) -> Response:
        body = parse_body(await read_body(request, limit), UserBody)
        user = await asyncio.to_thread(
            directory().create_user,
            body.name,
            actor(request),
            role=body.role,
            kind=body.kind,
            team=body.team,
            org=body.org,
        )
        return JSONResponse(user_view(user), status_code=201)

    @router.get("/teams")
    async def list_teams() -> Response:
        teams = await asyncio.to_thread(directory().teams)
        return JSONResponse({"object": "list", "data": [team_view(t) for t in teams]})

    @router.post("/teams")
    async def create_team(request: Request) -> Response:
        body = parse_body(await read_body(request, limit), TeamBody)
        team = await asyncio.to_thread(
            directory().create_team,
            body.name,
            actor(request),
            org=body.org,
            rpm=body.rpm,
            tpm=body.tpm,
            budget=body.budget,
            budget_period=body.budget_period,
        )
        return JSONResponse(team_view(team), status_code=201)

    @router.get("/audit")
    async def audit_rows(limit_rows: int = 50, action: str | None = None) -> Response:
        rows = await asyncio.to_thread(audit.list_rows, directory().store, limit=limit_rows, action=action)
        return JSONResponse({"object": "list", "data": [audit.row_view(r) for r in rows]})

    @router.get("/audit/verify")
    async def audit_verify() -> Response:
        result = await asyncio.to_thread(audit.verify, directory().store)
        return JSONResponse(
            {"ok": result.ok, "rows": result.rows, "head": result.head_hash, "problems": result.problems},
            status_code=200 if result.ok else 409,
        )

    @router.get("/traces")
    async def traces(limit_rows: int = 20, model: str | None = None) -> Response:
        rows = await asyncio.to_thread(list_traces, directory().store, limit=limit_rows, model=model)
        return JSONResponse({"object": "list", "data": [gdpr.trace_view(r, []) for r in rows]})

    @router.get("/traces/{trace_id}")
    async def trace(trace_id: str) -> Response:
        trace, spans = await asyncio.to_thread(get_trace, directory().store, trace_id)
        return JSONResponse(gdpr.trace_view(trace, spans))

    @router.get("/usage")
    async def usage(days: int = 7, model: str | None = None) -> Response:
        from llmdock.store.usage import usage_summary

        rows = await asyncio.to_thread(usage_summary, directory().store, days=days, model=model)
        return JSONResponse({"object": "list", "data": [asdict(r) for r in rows]})

    @router.post("/data/export")
    async def export(request: Request) -> Response:
        body = parse_body(await read_body(request, limit), SubjectBody)
        data = await asyncio.to_thread(
            gdpr.export_subject, directory().store, body.subject, actor(request), service.secret
        )
        return JSONResponse(data)

    @router.post("/data/erase")
    async def erase(request: Request) -> Response:
        body = parse_body(await read_body(request, limit), SubjectBody)
        report = await asyncio.to_thread(
            gdpr.erase_subject, directory().store, body.subject, actor(request), service.secret
        )
        service.refresh()
        return JSONResponse(report)

    router.include_router(build_registry_router(runtime, limit, actor))
    return router
