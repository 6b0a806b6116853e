"""Authentication, authorization, rate limits and budgets for the gateway.

``AuthService.authenticate`` turns an ``Authorization: Bearer`` (or ``x-api-key``) header into a
:class:`Principal` or a 401 that never says which part failed. Verified keys are kept in memory for
``auth.cache_ttl_s`` seconds (keyed by their HMAC, never the key), so a request costs one HMAC and a dict
lookup; a key revoked through the admin API is dropped at once in that worker, and other workers notice
within the TTL. Per key and per team: requests and tokens per minute (Redis-shared when configured) and
spend budgets per day or month (``auth.budgets``), which reset when the period changes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import select

from llmdock.auth.budgets import Spend
from llmdock.auth.keys import KEY_PREFIX, PREFIX_LEN, Directory, digest, load_secret
from llmdock.auth.roles import ROLES, Permission
from llmdock.config import Settings
from llmdock.errors import AuthError, Forbidden, RateLimited
from llmdock.limits import MinuteLimiter, SharedMinuteLimiter
from llmdock.shared_state import SharedState
from llmdock.store import audit
from llmdock.store.engine import Store, _short
from llmdock.store.models import ApiKey, Team, User
from llmdock.store.usage import last_minute

log = logging.getLogger("llmdock.auth")
UNAUTHORIZED = "Invalid or missing API key."


@dataclass(slots=True)
class Quota:
    """The limits of one key or one team."""

    scope: str  # "key:<id>" or "team:<id>"
    rpm: int | None
    tpm: int | None
    budget: float | None
    period: str
    limiter: MinuteLimiter | SharedMinuteLimiter | None = None


@dataclass(slots=True)
class Principal:
    key_id: str
    prefix: str
    user_id: str
    user: str
    role: str
    team_id: str
    permissions: frozenset[Permission]
    models: list[str] | None
    expires_at: datetime | None
    quotas: list[Quota] = field(default_factory=list)
    prompts: list[str] | None = None  # None = any prompt, raw or templated; else only these templates

    @property
    def counted(self) -> bool:
        """Whether finished requests must be added to a token limit or a budget."""
        return any(q.tpm is not None or q.budget is not None for q in self.quotas)

    @property
    def actor(self) -> str:
        return f"key:{self.prefix} ({self.user})"

    def may_use(self, model: str) -> bool:
        return self.models is None or _matches(model, self.models)

    def may_prompt(self, template: str | None) -> bool:
        """A key scoped to prompt templates may only send requests that name one of them."""
        if self.prompts is None:
            return True
        return template is not None and _matches(template, self.prompts)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


class AuthService:
    def __init__(self, settings: Settings, store: Store | None, shared: SharedState | None) -> None:
        self.settings = settings
        self.store = store
        self.shared = shared
        self.mode = settings.auth.enabled
        self.ttl = settings.auth.cache_ttl_s
        self.secret = load_secret(settings) if store is not None else b""
        self.directory = Directory(store, self.secret) if store is not None else None
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._limiters: dict[str, MinuteLimiter | SharedMinuteLimiter] = {}
        self.spend = Spend(store, shared)
        self._active: bool | None = None
        self._active_checked = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- on or off ------------------------------------------------------------------------------------
    def active(self) -> bool:
        """Whether keys are required. ``auto``: as soon as an unrevoked admin key exists.

        Never blocks after the first call: while off, the answer is re-read from the store in a thread every
        TTL (so a first admin key created with the CLI turns auth on in a running gateway within seconds).
        """
        if self.mode != "auto":
            return self.mode == "on"
        if self._active is None:
            self._active = self.directory is not None and self._safe_has_admin()
            self._active_checked = time.monotonic()
        elif not self._active and time.monotonic() - self._active_checked > max(self.ttl, 1.0):
            self._active_checked = time.monotonic()
            self._spawn(asyncio.to_thread(self._recheck))
        return self._active

    def _recheck(self) -> None:
        self._active = self._safe_has_admin()

    def _safe_has_admin(self) -> bool:
        assert self.directory is not None
        try:
            return self.directory.has_admin_key()
        except Exception as exc:  # the store is down: keep the previous answer (fail closed if it was on)
            log.warning("cannot read keys from the store: %s", exc)
            return bool(self._active)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refresh(self) -> None:
        """Forget cached answers (a key was changed through this worker's admin API)."""
        self._cache.clear()
        self._active = None

    # --- authentication -------------------------------------------------------------------------------
    async def authenticate(self, header: str, source: str) -> Principal:
        key = header[7:].strip() if header[:7].lower() == "bearer " else header.strip()
        if not key.startswith(KEY_PREFIX) or len(key) < PREFIX_LEN + 8 or self.directory is None:
            self._audit_failure(key, "malformed", source)
            raise AuthError(UNAUTHORIZED)
        mac = digest(self.secret, key)
        now = time.monotonic()
        hit = self._cache.get(mac)
        if hit is not None and now - hit[0] < self.ttl:
            principal = hit[1]
        else:
            found = await asyncio.to_thread(self._load, key[:PREFIX_LEN], mac)
            if isinstance(found, str):
                self._audit_failure(key, found, source)
                raise AuthError(UNAUTHORIZED)
            principal = found
            self._cache[mac] = (now, principal)
        if principal.expires_at is not None and principal.expires_at <= datetime.now(UTC):
            self._cache.pop(mac, None)
            self._audit_failure(key, "expired", source)
            raise AuthError(UNAUTHORIZED)
        return principal

    def principal_of(self, prefix: str, mac: str) -> Principal | None:
        """The principal of a key known by its prefix and keyed hash (a dashboard session keeps those, never
        the key); None when the key is unknown, revoked or expired. Reads the store: call it in a thread."""
        found = self._load(prefix, mac)
        return None if isinstance(found, str) else found

    def _load(self, prefix: str, mac: str) -> Principal | str:
        """The principal for a key, or why it is refused (for the audit log, never for the client)."""
        assert self.store is not None
        with self.store.session() as s:
            row = s.execute(
                select(ApiKey, User).join(User, ApiKey.user_id == User.id).where(ApiKey.prefix == prefix)
            ).first()
            if row is None:
                return "unknown key"
            key, user = row
            if not hmac.compare_digest(key.digest, mac):
                return "wrong secret"
            if key.revoked_at is not None:
                return "revoked"
            if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
                return "expired"
            team = s.get(Team, user.team_id) if user.team_id else None
        permissions = ROLES.get(user.role, frozenset())
        if key.routes is not None:
            permissions = permissions & frozenset(key.routes)  # type: ignore[arg-type]
        quotas = [Quota(f"key:{key.id}", key.rpm, key.tpm, key.budget, key.budget_period)]
        if team is not None:
            quotas.append(Quota(f"team:{team.id}", team.rpm, team.tpm, team.budget, team.budget_period))
        for q in quotas:
            if q.rpm is not None or q.tpm is not None:
                q.limiter = self._limiter(q)
        return Principal(
            key_id=key.id,
            prefix=key.prefix,
            user_id=user.id,
            user=user.name,
            role=user.role,
            team_id=user.team_id or "",
            permissions=permissions,
            models=key.models,
            expires_at=key.expires_at,
            quotas=quotas,
            prompts=key.prompts,
        )

    def _seed(self, limiter: MinuteLimiter, scope: str) -> None:
        """Count what the scope did in the last minute (before a restart, or on another worker that stored it)."""
        if self.store is None:
            return
        try:
            limiter.seed(last_minute(self.store, scope))
        except Exception as exc:  # the store is away: the limiter starts empty, as it did before
            log.warning("cannot read the last minute's requests of %s: %s", scope, _short(exc))

    def _limiter(self, q: Quota) -> MinuteLimiter | SharedMinuteLimiter:
        # Kept across cache refreshes so that the counts of the current minute survive them.
        name = f"{q.scope}:{q.rpm}:{q.tpm}"
        limiter = self._limiters.get(name)
        if limiter is None:
            local = MinuteLimiter(q.rpm, q.tpm)
            self._seed(local, q.scope)
            limiter = SharedMinuteLimiter(self.shared, f"auth:{q.scope}", local) if self.shared else local
            self._limiters[name] = limiter
        return limiter

    def _audit_failure(self, key: str, reason: str, source: str) -> None:
        if self.store is None:
            return
        shown = (
            key[:PREFIX_LEN]
            if key.startswith(KEY_PREFIX)
            else ("(none)" if not key else "(not an llmdock key)")
        )
        self._spawn(asyncio.to_thread(self._append_failure, shown, reason, source))

    def _append_failure(self, shown: str, reason: str, source: str) -> None:
        assert self.store is not None
        try:
            audit.append(
                self.store,
                "auth.failure",
                actor="anonymous",
                target=shown,
                source=source,
                after={"reason": reason},
            )
        except Exception as exc:
            log.warning("cannot audit a failed key use: %s", exc)

    # --- authorization --------------------------------------------------------------------------------
    @staticmethod
    def authorize(principal: Principal, permission: Permission) -> None:
        if permission not in principal.permissions:
            raise Forbidden(f"this key may not use {permission} routes (role {principal.role})")

    @staticmethod
    def check_model(principal: Principal | None, model: str) -> None:
        if principal is not None and not principal.may_use(model):
            raise Forbidden(f"this key may not use model {model!r}", param="model")

    @staticmethod
    def check_prompt(principal: Principal | None, template: str | None) -> None:
        if principal is None or principal.may_prompt(template):
            return
        if template is None:
            raise Forbidden("this key may only send prompt templates (give prompt_id)", param="prompt_id")
        raise Forbidden(f"this key may not use prompt template {template!r}", param="prompt_id")

    # --- limits and budgets ---------------------------------------------------------------------------
    async def admit(self, principal: Principal) -> dict[str, str]:
        """Count one request against the key's and team's limits; the x-ratelimit-* headers to send."""
        headers: dict[str, str] = {}
        for q in principal.quotas:
            if q.budget is not None:
                await self.spend.check(q.scope, q.budget, q.period)
            if q.limiter is None:
                continue
            if not await q.limiter.try_acquire(0):
                wait = max(1, int(q.limiter.retry_after() + 0.999))
                raise RateLimited(
                    f"rate limit of the {'key' if q.scope.startswith('key:') else 'team'} reached "
                    f"({_limits_text(q)}); retry in {wait} s",
                    headers={"Retry-After": str(wait), **_rate_headers(q, wait)},
                )
            headers.update(_rate_headers(q, int(q.limiter.retry_after() + 0.999)))
        return headers

    async def account(self, principal: Principal, tokens: int, cost: float) -> None:
        """Add a finished request's tokens and cost to the key's and team's counters."""
        for q in principal.quotas:
            if q.limiter is not None and tokens:
                await q.limiter.add_tokens(tokens)
            if q.budget is not None and cost:
                await self.spend.add(q.scope, q.period, cost)

    def schedule_account(self, principal: Principal, tokens: int, cost: float) -> None:
        """``account`` from synchronous code on the event loop (pipeline success callbacks)."""
        if not tokens and not cost:
            return
        self._spawn(self.account(principal, tokens, cost))


def _limits_text(q: Quota) -> str:
    parts = [f"{q.rpm} requests/min" if q.rpm else "", f"{q.tpm} tokens/min" if q.tpm else ""]
    return ", ".join(p for p in parts if p)


def _rate_headers(q: Quota, reset_s: int) -> dict[str, str]:
    """OpenAI-style x-ratelimit-* headers from the limiter's counts of this minute."""
    if q.limiter is None:
        return {}
    snap = q.limiter.snapshot()
    headers: dict[str, str] = {}
    if q.rpm is not None:
        used = int(snap.get("requests_last_minute", 0) or 0)  # type: ignore[call-overload]
        headers["x-ratelimit-limit-requests"] = str(q.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, q.rpm - used))
        headers["x-ratelimit-reset-requests"] = f"{reset_s}s"
    if q.tpm is not None:
        used = int(snap.get("tokens_last_minute", 0) or 0)  # type: ignore[call-overload]
        headers["x-ratelimit-limit-tokens"] = str(q.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, q.tpm - used))
        headers["x-ratelimit-reset-tokens"] = f"{reset_s}s"
    return headers
