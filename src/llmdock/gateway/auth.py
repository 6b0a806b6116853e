"""The authentication middleware: in front of every route, before the framework's routing.

When auth is active every route but ``/health`` needs a valid key whose role (narrowed by the key's own
``routes``) grants the route's permission (llmdock.auth.roles). Inference routes are also counted against
the key's and its team's requests/tokens per minute and spend budgets; their ``x-ratelimit-*`` headers are
added to the response. The principal travels to the handlers in ``scope["state"]["principal"]``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmdock.auth.roles import required_permission
from llmdock.auth.service import AuthService
from llmdock.errors import Forbidden, LlmdockError
from llmdock.gateway.http import error_response


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}" if client else ""


class AuthMiddleware:
    def __init__(self, app: ASGIApp, service: AuthService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not self.service.active():
            if path.startswith("/admin"):
                await error_response(
                    Forbidden(
                        "the admin API needs auth: create an admin key with `llmdock keys create --role admin`"
                    )
                )(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        permission = required_permission(scope["method"], path)
        if permission is None:
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope["headers"]:
            if name == b"authorization" or (name == b"x-api-key" and not header):
                header = value.decode("latin-1")
        try:
            principal = await self.service.authenticate(header, client_address(scope))
            self.service.authorize(principal, permission)
            extra = await self.service.admit(principal) if permission == "inference" else {}
        except LlmdockError as exc:
            await error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        if not extra:
            await self.app(scope, receive, send)
            return
        raw = [(k.encode(), v.encode()) for k, v in extra.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *raw]
            await send(message)

        await self.app(scope, receive, send_with_headers)
