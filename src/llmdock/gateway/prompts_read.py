"""``GET /v1/prompts/{name}``: one template version for the prompt SDK (``llmdock.prompts.get``).

Applications fetch their templates with the key they send requests with, so this route needs the
``inference`` permission, not ``admin``. A key scoped to some templates (``--prompts``) reads only those;
any other name, known or not, is refused alike (403), so a scoped key cannot probe what exists.
``?version=N`` pins a version, ``?label=L`` picks a label; with neither, ``production``, else the latest —
the same rule as a request's ``prompt_id``.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import Forbidden
from llmdock.gateway.admin_registry import prompt_registry
from llmdock.gateway.deps import RuntimeDep, principal_of
from llmdock.gateway.http import JSONResponse
from llmdock.gateway.schemas import StoredCount

router = APIRouter()


@router.get("/v1/prompts/{name}")
async def get_prompt(
    name: str,
    request: Request,
    runtime: RuntimeDep,
    version: StoredCount | None = None,
    label: str | None = None,
) -> Response:
    principal = principal_of(request)
    if principal is not None and not principal.may_prompt(name):
        raise Forbidden(f"this key may not use prompt template {name!r}", param="name")
    registry = prompt_registry(runtime)

    def read() -> dict[str, object]:
        return registry.described_one(registry.get(name, version=version, label=label))

    return JSONResponse(await asyncio.to_thread(read))
