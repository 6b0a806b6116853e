"""Keys, users and teams as they are shown to people (admin API, CLI, audit rows, GDPR exports).

A key is never shown with its digest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmdock.store.models import ApiKey, Team, User


def key_state(key: ApiKey, now: datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired``."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return "active"


def key_view(key: ApiKey, user: User | None = None) -> dict[str, Any]:
    """A key as shown to people: never its digest."""
    view: dict[str, Any] = {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "user_id": key.user_id,
        "state": key_state(key),
        "models": key.models,
        "routes": key.routes,
        "prompts": key.prompts,
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget": key.budget,
        "budget_period": key.budget_period,
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        "created_at": key.created_at.isoformat(),
        "rotated_from": key.rotated_from,
    }
    if user is not None:
        view.update(user=user.name, role=user.role, team_id=user.team_id)
    return view


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "kind": user.kind,
        "role": user.role,
        "org_id": user.org_id,
        "team_id": user.team_id,
        "created_at": user.created_at.isoformat(),
    }


def team_view(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "org_id": team.org_id,
        "rpm": team.rpm,
        "tpm": team.tpm,
        "budget": team.budget,
        "budget_period": team.budget_period,
        "created_at": team.created_at.isoformat(),
    }
