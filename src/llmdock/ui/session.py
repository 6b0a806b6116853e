"""Who is looking at the dashboard: signing in with an API key, the session cookie, CSRF tokens.

Signing in checks the key exactly as the API does (``AuthService.authenticate``: unknown, revoked and expired
keys are refused alike, and audited) and needs the ``observe`` permission (roles viewer, developer, admin).
The browser then holds a cookie (HttpOnly, SameSite=Strict, Secure over HTTPS, path ``/ui``) carrying a
random token signed with the gateway's auth secret (itsdangerous, with its age checked); the store keeps the
token's SHA-256 and the key's prefix and keyed hash (``llmdock.store.ui_rows``), so every page looks the key
up again: revoking a key ends its sessions on the next click. Each form carries a CSRF token signed for its
session. While auth is off (no admin key yet: the default embedded set-up) every visitor is the local admin,
as for the API, and the page says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete

from llmdock.auth.keys import digest
from llmdock.auth.service import AuthService, Principal
from llmdock.errors import Forbidden
from llmdock.feedback import Scope
from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.ui_rows import UiSession

COOKIE = "llmdock_ui"
SESSION_TTL_S = 8 * 3600
CHANGE_ROLES = frozenset({"admin", "developer"})  # may promote and roll back prompt labels
LOGIN_FORM = "login"  # what a CSRF token of the sign-in form (before any session) is bound to


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a page: a signed-in key's user, or the local admin while auth is off."""

    name: str
    role: str
    team: str | None  # None: every team's traces (admin, or auth off); else only this team's
    session: str  # the session's id; "" while auth is off
    auth_on: bool

    @property
    def scope(self) -> Scope:
        return Scope(self.team)

    @property
    def may_change(self) -> bool:
        return self.role in CHANGE_ROLES

    def actor(self, source: str) -> Actor:
        return Actor(f"{self.name} (dashboard)", source)


LOCAL_ADMIN = Viewer("local admin", "admin", None, "", auth_on=False)


def viewer_of(principal: Principal, session: str) -> Viewer:
    team = None if "admin" in principal.permissions else principal.team_id
    return Viewer(principal.actor, principal.role, team, session, auth_on=True)


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, store: Store | None, auth: AuthService) -> None:
        self.store = store
        self.auth = auth
        secret = auth.secret or secrets.token_bytes(32)  # no store: nothing to sign in to, forms still signed
        self.cookies = URLSafeTimedSerializer(secret, salt="llmdock.ui.session")
        self.forms = URLSafeTimedSerializer(secret, salt="llmdock.ui.csrf")

    def auth_on(self) -> bool:
        return self.auth.active()

    async def sign_in(self, key: str, source: str) -> tuple[str, Viewer]:
        """A key typed into the sign-in form → (the cookie's value, the viewer); AuthError or Forbidden."""
        principal = await self.auth.authenticate(key.strip(), source)
        if "observe" not in principal.permissions:
            raise Forbidden(
                f"role {principal.role!r} may not use the dashboard (it needs viewer, developer or admin)"
            )
        token = secrets.token_urlsafe(32)
        mac = digest(self.auth.secret, key.strip())
        await asyncio.to_thread(self._open, _session_id(token), principal, mac, source)
        return self.cookies.dumps(token), viewer_of(principal, _session_id(token))

    def _open(self, sid: str, principal: Principal, mac: str, source: str) -> None:
        assert self.store is not None  # authenticate() refuses every key without a store
        now = datetime.now(UTC)
        with self.store.session() as s, s.begin():
            s.execute(delete(UiSession).where(UiSession.expires_at < now))
            s.add(
                UiSession(
                    id=sid,
                    key_prefix=principal.prefix,
                    key_digest=mac,
                    created_at=now,
                    expires_at=now + timedelta(seconds=SESSION_TTL_S),
                )
            )
        audit.record(self.store, "ui.login", Actor(principal.actor, source), target=f"key:{principal.prefix}")

    def viewer(self, cookie: str | None) -> Viewer | None:
        """The signed-in viewer a cookie stands for, or None (no cookie, bad signature, ended session,
        key revoked or expired). Reads the store: call it in a thread."""
        if not cookie or self.store is None:
            return None
        try:
            token = self.cookies.loads(cookie, max_age=SESSION_TTL_S)
        except BadSignature:
            return None
        sid = _session_id(str(token))
        with self.store.session() as s:
            row = s.get(UiSession, sid)
        if row is None or row.expires_at <= datetime.now(UTC):
            return None
        principal = self.auth.principal_of(row.key_prefix, row.key_digest)
        if principal is None or "observe" not in principal.permissions:
            return None
        return viewer_of(principal, sid)

    def sign_out(self, viewer: Viewer, source: str) -> None:
        if self.store is None or not viewer.session:
            return
        with self.store.session() as s, s.begin():
            s.execute(delete(UiSession).where(UiSession.id == viewer.session))
        audit.record(self.store, "ui.logout", viewer.actor(source))

    def csrf_token(self, bound_to: str) -> str:
        """The token a form sends back: signed, bound to the session (or to the sign-in form)."""
        return self.forms.dumps(bound_to or "local")

    def check_csrf(self, bound_to: str, token: object) -> None:
        try:
            value = self.forms.loads(str(token or ""), max_age=SESSION_TTL_S)
        except BadSignature:
            value = None
        if not isinstance(value, str) or not hmac.compare_digest(value, bound_to or "local"):
            raise Forbidden("this form's CSRF token is missing or stale: reload the page and try again")
