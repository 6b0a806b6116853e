"""What handlers take from a request: the runtime (in the app's state), the caller, the parsed body.

Handlers are module-level functions; the runtime reaches them through ``request.app.state.runtime`` (a
plain read; the generation routes bypass FastAPI's dependency machinery for speed) or, on the other routes,
through the :data:`RuntimeDep` dependency.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends
from pydantic import BaseModel
from starlette.requests import Request

from llmdock.auth.service import Principal
from llmdock.gateway.auth import client_address
from llmdock.gateway.http import parse_body, read_body
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor

B = TypeVar("B", bound=BaseModel)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


def principal_of(request: Request) -> Principal | None:
    """The authenticated caller (set by the auth middleware), or None while auth is off."""
    state = request.scope.get("state")
    return state.get("principal") if state else None


def actor_of(request: Request) -> Actor:
    """Who makes a change, for the audit log: the calling key and the client address."""
    principal = principal_of(request)
    return Actor(principal.actor if principal else "anonymous", client_address(request.scope))


async def body_of(request: Request, model: type[B], runtime: Runtime | None = None) -> B:
    """The request body validated as ``model``, refused beyond ``max_body_bytes``."""
    limit = (runtime or runtime_of(request)).settings.max_body_bytes
    return parse_body(await read_body(request, limit), model)
