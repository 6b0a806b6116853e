"""Organisations, teams, users and API keys in the store.

A key looks like ``ldk_<12 visible characters>_<32 secret characters>``. The store keeps only the visible
prefix (to find the row and to show which key it is) and an HMAC-SHA256 of the whole key under a server
secret (``auth.secret``, else a random one created in ``<home>/auth.secret``); the key itself is shown once,
when it is created. Keys carry 192 random bits, so a fast keyed hash is enough (a slow hash such as argon2
protects low-entropy passwords; it would only add milliseconds to every request here).

Every change is written to the audit log in the same call.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select

from llmdock.auth.roles import check_role, check_routes
from llmdock.config import Settings
from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.store import audit
from llmdock.store.access_views import key_view, team_view, user_view
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.models import ApiKey, Org, Team, User

KEY_PREFIX = "ldk_"
PREFIX_LEN = len(KEY_PREFIX) + 12
DEFAULT_ORG = "default"
PERIODS = ("day", "month")
RowT = TypeVar("RowT", Org, Team, User)
MemberT = TypeVar("MemberT", Team, User)  # rows that belong to an organisation and are unique by name in it


def load_secret(settings: Settings) -> bytes:
    """The key-hashing secret: from settings (env LLMDOCK_AUTH__SECRET), else a file made once in home."""
    value = settings.auth.secret.get_secret_value()
    if value:
        return value.encode()
    path = Path(settings.home).expanduser() / "auth.secret"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then linked into place: several workers starting at once all end up with the one
    # secret that won, never with a half-written file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth.secret.")
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fchmod(fd, 0o600)
        os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_bytes().strip()


def digest(secret: bytes, key: str) -> str:
    return hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()


def new_id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _check_period(period: str) -> str:
    if period not in PERIODS:
        raise InvalidRequest(f"budget_period must be one of {', '.join(PERIODS)}", param="budget_period")
    return period


def _check_limits(rpm: int | None, tpm: int | None, budget: float | None) -> None:
    for name, value in (("rpm", rpm), ("tpm", tpm), ("budget", budget)):
        if value is not None and value <= 0:
            raise InvalidRequest(f"{name} must be positive", param=name)


class Directory:
    """Create, find, change and revoke orgs, teams, users and keys; every change is audited."""

    def __init__(self, store: Store, secret: bytes) -> None:
        self.store = store
        self.secret = secret

    def _find(self, model: type[RowT], ref: str, label: str) -> RowT:
        """A row by id or by name."""
        with self.store.session() as s:
            row = s.get(model, ref) or s.scalar(select(model).where(model.name == ref))
        if row is None:
            raise NotFound(f"no {label} {ref!r}", param=label)
        return row

    def _all(self, model: type[RowT]) -> list[RowT]:
        with self.store.session() as s:
            return list(s.scalars(select(model).order_by(model.created_at)))

    def _add_member(self, row: MemberT, label: str, org: str, actor: Actor, after: dict[str, Any]) -> MemberT:
        """Add a team or user unless its organisation has one of that name already; audit it."""
        kind = type(row)
        clash = select(kind).where(kind.org_id == row.org_id, kind.name == row.name)
        with self.store.session() as s, s.begin():
            if s.scalar(clash) is not None:
                raise Conflict(f"{label} {row.name!r} exists in organisation {org!r}", param="name")
            s.add(row)
        audit.record(self.store, f"{label}.create", actor, target=row.id, after=after)
        return row

    # --- orgs and teams -------------------------------------------------------------------------------
    def org(self, name: str, actor: Actor, *, create: bool = True) -> Org:
        with self.store.session() as s, s.begin():
            org = s.scalar(select(Org).where(Org.name == name))
            if org is not None:
                return org
            if not create:
                raise NotFound(f"no organisation {name!r}", param="org")
            org = Org(id=new_id("org"), name=name, created_at=_now())
            s.add(org)
        audit.record(self.store, "org.create", actor, target=org.id, after={"name": name})
        return org

    def create_team(
        self,
        name: str,
        actor: Actor,
        *,
        org: str = DEFAULT_ORG,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: float | None = None,
        budget_period: str = "month",
    ) -> Team:
        _check_limits(rpm, tpm, budget)
        org_row = self.org(org, actor)
        team = Team(
            id=new_id("team"),
            org_id=org_row.id,
            name=name,
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            budget_period=_check_period(budget_period),
            created_at=_now(),
        )
        return self._add_member(team, "team", org, actor, team_view(team))

    def team(self, ref: str) -> Team:
        return self._find(Team, ref, "team")

    def teams(self) -> list[Team]:
        return self._all(Team)

    # --- users ------------------------------------------------------------------------------------------
    def create_user(
        self,
        name: str,
        actor: Actor,
        *,
        role: str = "developer",
        kind: str = "user",
        team: str | None = None,
        org: str = DEFAULT_ORG,
    ) -> User:
        check_role(role)
        if kind not in ("user", "service"):
            raise InvalidRequest("kind must be user or service", param="kind")
        org_row = self.org(org, actor)
        team_id = self.team(team).id if team else None
        user = User(
            id=new_id("usr"),
            org_id=org_row.id,
            team_id=team_id,
            name=name,
            kind=kind,
            role=role,
            created_at=_now(),
        )
        # The audit row names the user by id only: names may be personal data, and audit rows are never erased.
        return self._add_member(
            user, "user", org, actor, {k: v for k, v in user_view(user).items() if k != "name"}
        )

    def user(self, ref: str) -> User:
        return self._find(User, ref, "user")

    def users(self) -> list[User]:
        return self._all(User)

    # --- keys -------------------------------------------------------------------------------------------
    def create_key(
        self,
        user_ref: str,
        actor: Actor,
        *,
        name: str = "",
        models: list[str] | None = None,
        routes: list[str] | None = None,
        prompts: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: float | None = None,
        budget_period: str = "month",
        expires_at: datetime | None = None,
        rotated_from: str | None = None,
    ) -> tuple[str, ApiKey]:
        """A new key for a user; returns (the key in clear — shown once —, its row)."""
        _check_limits(rpm, tpm, budget)
        check_routes(routes)
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        user = self.user(user_ref)
        visible = secrets.token_hex(6)
        clear = f"{KEY_PREFIX}{visible}_{secrets.token_urlsafe(24)}"
        key = ApiKey(
            id=new_id("key"),
            prefix=clear[:PREFIX_LEN],
            digest=digest(self.secret, clear),
            user_id=user.id,
            name=name,
            models=models,
            routes=routes,
            prompts=prompts,
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            budget_period=_check_period(budget_period),
            expires_at=expires_at,
            created_at=_now(),
            rotated_from=rotated_from,
        )
        with self.store.session() as s, s.begin():
            s.add(key)
        audit.record(self.store, "key.create", actor, target=key.id, after=key_view(key))
        return clear, key

    def key(self, ref: str) -> ApiKey:
        with self.store.session() as s:
            key = s.get(ApiKey, ref) or s.scalar(select(ApiKey).where(ApiKey.prefix == ref[:PREFIX_LEN]))
        if key is None:
            raise NotFound(f"no key {ref[:PREFIX_LEN]!r}", param="key")
        return key

    def keys(self, user_ref: str | None = None) -> list[tuple[ApiKey, User]]:
        with self.store.session() as s:
            query = select(ApiKey, User).join(User, ApiKey.user_id == User.id).order_by(ApiKey.created_at)
            if user_ref:
                query = query.where(User.id == self.user(user_ref).id)
            return [(k, u) for k, u in s.execute(query).all()]

    def revoke(self, ref: str, actor: Actor) -> ApiKey:
        key = self.key(ref)
        before = key_view(key)
        if key.revoked_at is None:
            with self.store.session() as s, s.begin():
                row = s.get(ApiKey, key.id)
                assert row is not None
                row.revoked_at = _now()
                key = row
            audit.record(self.store, "key.revoke", actor, target=key.id, before=before, after=key_view(key))
        return key

    def rotate(self, ref: str, actor: Actor, *, expires_at: datetime | None = None) -> tuple[str, ApiKey]:
        """A new key with the same owner, scopes and limits; the old one is revoked."""
        old = self.key(ref)
        if old.revoked_at is not None:
            raise InvalidRequest(f"key {old.prefix!r} is revoked; create a new one", param="key")
        clear, new = self.create_key(
            old.user_id,
            actor,
            name=old.name,
            models=old.models,
            routes=old.routes,
            prompts=old.prompts,
            rpm=old.rpm,
            tpm=old.tpm,
            budget=old.budget,
            budget_period=old.budget_period,
            expires_at=expires_at or old.expires_at,
            rotated_from=old.id,
        )
        self.revoke(old.id, actor)
        return clear, new

    def has_admin_key(self) -> bool:
        now = _now()
        with self.store.session() as s:
            rows = s.execute(
                select(ApiKey.expires_at)
                .join(User, ApiKey.user_id == User.id)
                .where(User.role == "admin", ApiKey.revoked_at.is_(None))
            ).all()
        return any(expires is None or expires > now for (expires,) in rows)
