"""Rendering: the Jinja templates of the package (autoescaped: stored text is never HTML), the headers every
page carries, and the pages for errors (404, 403, bad input, a bug) instead of tracebacks or JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from llmdock import __version__
from llmdock.errors import InvalidRequest
from llmdock.runtime import Runtime
from llmdock.ui.session import LOCAL_ADMIN, Sessions, Viewer

# Scripts only from /ui/static (htmx, uPlot, app.js); inline style attributes are allowed (the waterfall's
# bars are positioned with them), nothing is fetched from elsewhere, and no other site may frame the pages.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("llmdock.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    env.filters["ms"] = lambda v: f"{v:,.1f}" if isinstance(v, float | int) else ""
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M:%S") if t is not None else ""
    return env


@dataclass
class Ui:
    """What every handler needs: the runtime it reads from, the sessions, the templates."""

    runtime: Runtime
    sessions: Sessions
    templates: Jinja2Templates


def ui_of(request: Request) -> Ui:
    ui: Ui = request.app.state.ui
    return ui


def render(
    request: Request, template: str, viewer: Viewer | None, status: int = 200, **context: Any
) -> Response:
    ui = ui_of(request)
    base = request.scope.get("root_path", "")
    csrf = ui.sessions.csrf_token(viewer.session if viewer else "login")
    context |= {"viewer": viewer, "csrf": csrf, "base": base, "path": request.url.path}
    response = ui.templates.TemplateResponse(request, template, context, status_code=status)
    response.headers.update(HEADERS)
    return response


def chosen_period(request: Request, periods: dict[str, int]) -> tuple[int, dict[str, Any]]:
    """The ``period`` asked for (the first of ``periods`` when none): its hours, and what the page's period
    links need; InvalidRequest for another value."""
    period = request.query_params.get("period", next(iter(periods)))
    if period not in periods:
        raise InvalidRequest(f"period: one of {', '.join(periods)}, not {period[:20]!r}", param="period")
    return periods[period], {"period": period, "periods": list(periods)}


def error_page(request: Request, status: int, message: str) -> Response:
    viewer = request.scope.get("state", {}).get("ui_viewer")
    titles = {400: "Bad request", 401: "Sign-in needed", 403: "Forbidden", 404: "Not found", 409: "Conflict"}
    title = titles.get(status, "Error" if status < 500 else "Server error")
    return render(request, "error.html", viewer, status=status, title=title, message=message)


async def http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = "no such page" if status == 404 else str(getattr(exc, "detail", "")) or "error"
    return error_page(request, status, message)


__all__ = ["LOCAL_ADMIN", "Ui", "environment", "error_page", "render", "ui_of"]
