"""Access control: who may call the gateway and how much.

``keys``: organisations, teams, users and API keys (the :class:`Directory`); ``roles``: the permission
matrix; ``service``: authentication, authorization, rate limits and budgets per request
(:class:`AuthService`). Changes are written to the audit log (``llmdock.store.audit``).

``service`` is imported when first used: it brings the shared state (Redis) with it, which the CLI's key
commands do not need.
"""

from typing import TYPE_CHECKING, Any

from llmdock.auth.keys import Directory, load_secret
from llmdock.auth.roles import ROLES, Permission, required_permission

if TYPE_CHECKING:
    from llmdock.auth.service import AuthService, Principal

__all__ = [
    "ROLES",
    "AuthService",
    "Directory",
    "Permission",
    "Principal",
    "load_secret",
    "required_permission",
]


def __getattr__(name: str) -> Any:
    if name in ("AuthService", "Principal"):
        from llmdock.auth import service

        return getattr(service, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
