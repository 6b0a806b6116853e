"""The dashboard's ASGI app, mounted by the gateway at ``/ui``: routes, sign-in and sign-out, and the one
wrapper every page goes through (who is looking, CSRF on every POST, who may change things, errors as pages).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from importlib.resources import files
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from llmdock.errors import AuthError, Forbidden, LlmdockError
from llmdock.runtime import Runtime
from llmdock.ui import (
    drift_chart,
    eval_pages,
    experiment_pages,
    model_pages,
    monitor_pages,
    prompt_pages,
    trace_pages,
    usage_pages,
)
from llmdock.ui.pages import LOCAL_ADMIN, Ui, environment, error_page, http_error, render, ui_of
from llmdock.ui.session import COOKIE, SESSION_TTL_S, Sessions, Viewer

log = logging.getLogger("llmdock.ui")
Page = Callable[[Request, Viewer, Ui], Awaitable[Response]]


def client(request: Request) -> str:
    return request.client.host if request.client else ""


async def viewer_for(request: Request, ui: Ui) -> Viewer | None:
    """The viewer of this request: the local admin while auth is off, else the session's (None: sign in)."""
    if not ui.sessions.auth_on():
        return LOCAL_ADMIN
    return await asyncio.to_thread(ui.sessions.viewer, request.cookies.get(COOKIE))


def page(handler: Page, *, changes: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """A page handler behind the checks: signed in (else to the sign-in form), the form's CSRF token on POST,
    the developer or admin role for ``changes``; domain errors become pages with their status."""

    async def endpoint(request: Request) -> Response:
        ui = ui_of(request)
        try:
            viewer = await viewer_for(request, ui)
            if viewer is None:
                target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
                return RedirectResponse(f"{request.scope.get('root_path', '')}/login?next={target}", 303)
            request.scope.setdefault("state", {})["ui_viewer"] = viewer
            if request.method == "POST":
                form = await request.form()
                ui.sessions.check_csrf(viewer.session, form.get("csrf"))
                if changes and not viewer.may_change:
                    raise Forbidden(f"role {viewer.role!r} may not change this (it needs developer or admin)")
            return await handler(request, viewer, ui)
        except LlmdockError as exc:
            return error_page(request, exc.status, exc.one_line())
        except Exception as exc:
            log.exception("unexpected error in the dashboard", exc_info=exc)
            return error_page(request, 500, f"internal error ({type(exc).__name__}); see the server log")

    return endpoint


def _safe_next(target: str, base: str) -> str:
    """Where to go after signing in: only a page of the dashboard itself (no open redirect)."""
    if target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return base + "/traces"


async def login_form(request: Request) -> Response:
    ui = ui_of(request)
    if not ui.sessions.auth_on():
        return RedirectResponse(f"{request.scope.get('root_path', '')}/traces", 303)
    return render(request, "login.html", None, next=request.query_params.get("next", ""), message="")


async def login(request: Request) -> Response:
    ui, base = ui_of(request), request.scope.get("root_path", "")
    form = await request.form()
    target = _safe_next(str(form.get("next", "")), base)
    try:
        ui.sessions.check_csrf("login", form.get("csrf"))
        cookie, _ = await ui.sessions.sign_in(str(form.get("key", "")), client(request))
    except AuthError:
        return render(request, "login.html", None, 401, next=target, message="That key is not valid.")
    except LlmdockError as exc:
        return render(request, "login.html", None, exc.status, next=target, message=exc.one_line())
    response = RedirectResponse(target, 303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=SESSION_TTL_S,
        path=base or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request, viewer: Viewer, ui: Ui) -> Response:
    await asyncio.to_thread(ui.sessions.sign_out, viewer, client(request))
    base = request.scope.get("root_path", "")
    response = RedirectResponse(f"{base}/login" if viewer.auth_on else f"{base}/traces", 303)
    response.delete_cookie(COOKIE, path=base or "/")
    return response


async def home(request: Request) -> Response:
    return RedirectResponse(f"{request.scope.get('root_path', '')}/traces", 303)


def create_ui(runtime: Runtime) -> Starlette:
    """The dashboard as an ASGI app reading from ``runtime`` (its store, auth service, prompt registry)."""
    routes = [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", page(logout), methods=["POST"]),
        *[
            Route(path, page(h, changes=c), methods=[m])
            for module in (
                trace_pages,
                prompt_pages,
                model_pages,
                eval_pages,
                experiment_pages,
                usage_pages,
                monitor_pages,
                drift_chart,
            )
            for path, m, h, c in module.ROUTES
        ],
        Mount("/static", StaticFiles(directory=str(files("llmdock.ui").joinpath("static"))), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    templates = Jinja2Templates(env=environment())
    app.state.ui = Ui(runtime, Sessions(runtime.store, runtime.auth), templates)
    return app
