"""Roles, permissions and which permission each route needs.

The permission matrix (also in docs/security.md):

=========== ====== ========= ======= =====
role        read   inference observe admin
=========== ====== ========= ======= =====
admin       yes    yes       yes     yes
developer   yes    yes       yes     no
viewer      yes    no        yes     no
service     yes    yes       no      no
=========== ====== ========= ======= =====

``read``: list models, /ready, the API docs. ``inference``: chat, completions, embeddings, responses (making them, and reading
and deleting stored ones), batch files and batches, reading prompt templates (``/v1/prompts/{name}``).
``observe``: traces and usage through /admin/traces and /admin/usage, the Prometheus metrics (/metrics). ``admin``: keys, users, teams,
the audit log, data export/erasure, /v1/deployments. A key may narrow its role further (``routes``) and
to some models (``models``).
The dashboard under ``/ui`` is not checked here: it signs its users in itself (``llmdock.ui.session``:
``observe`` to look, role developer or admin to move prompt labels).
"""

from __future__ import annotations

from typing import Literal

from llmdock.errors import InvalidRequest

Permission = Literal["read", "inference", "observe", "admin"]
PERMISSIONS: tuple[Permission, ...] = ("read", "inference", "observe", "admin")
ROLES: dict[str, frozenset[Permission]] = {
    "admin": frozenset(PERMISSIONS),
    "developer": frozenset({"read", "inference", "observe"}),
    "viewer": frozenset({"read", "observe"}),
    "service": frozenset({"read", "inference"}),
}
PUBLIC_PATHS = frozenset({"/health"})
INFERENCE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"})
RESPONSES_PREFIX = "/v1/responses/"  # a stored response: read and deleted with the key that may make one
BATCH_PREFIXES = ("/v1/files", "/v1/batches")  # the Batch API: batches are inference, run later
PROMPTS_PREFIX = "/v1/prompts/"  # the prompt SDK reads templates with the key it sends requests with
OBSERVE_PREFIXES = ("/admin/traces", "/admin/usage")
UI_PREFIX = "/ui"


def required_permission(method: str, path: str) -> Permission | None:
    """The permission a request needs; None for the public routes."""
    if path in PUBLIC_PATHS or path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
        return None  # the dashboard signs its users in itself (llmdock.ui.session)
    if path in INFERENCE_PATHS or path.startswith((RESPONSES_PREFIX, PROMPTS_PREFIX, *BATCH_PREFIXES)):
        return "inference"
    if path == "/v1/deployments":
        return "admin"
    if path == "/metrics":
        return "observe"
    if path.startswith("/admin"):
        return "observe" if path.startswith(OBSERVE_PREFIXES) and method == "GET" else "admin"
    return "read"


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r} (known: {', '.join(ROLES)})", param="role")
    return role


def check_routes(routes: list[str] | None) -> list[str] | None:
    if routes is None:
        return None
    unknown = [r for r in routes if r not in PERMISSIONS]
    if unknown:
        raise InvalidRequest(
            f"unknown route scope {unknown[0]!r} (known: {', '.join(PERMISSIONS)})", param="routes"
        )
    return routes
