"""The router: one model name served by several deployments, with retries, fallbacks and breakers.

A :class:`ModelRoute` looks like a Backend to the pipeline (a "routed backend"): ``generate``, ``stream``
and ``embed`` pick deployments by the configured strategy, skip those whose breaker is open, whose limits
are reached or whose window is too small, retry with exponential backoff and jitter (honouring
``Retry-After``), and finally fall back to other model names. Streams fail over only until the first
chunk; after that an error ends the stream.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from llmdock.backends.base import (
    Backend,
    BackendSpec,
    EmbeddingResult,
    Generation,
    GenerationRequest,
    StreamChunk,
)
from llmdock.config import ModelConfig, Settings
from llmdock.errors import (
    BackendError,
    BackendUnavailable,
    ContextWindowExceeded,
    GuardBlocked,
    LlmdockError,
    Overloaded,
    RateLimited,
)
from llmdock.limits import MinuteLimiter, SharedMinuteLimiter
from llmdock.routing.breaker import CircuitBreaker
from llmdock.routing.deployment import Deployment
from llmdock.routing.strategies import STRATEGIES

if TYPE_CHECKING:
    from llmdock.shared_state import SharedState

log = logging.getLogger("llmdock.router")
BREAKER_KEY = "llmdock:breaker:"
BREAKER_SYNC_S = 0.5


async def _none() -> None:
    return None


async def _no_values() -> list[Any]:
    return []


T = TypeVar("T")

# Errors after which the next deployment (or the same one, later) may succeed.
RETRYABLE = (BackendError, RateLimited, TimeoutError)
# Errors that no deployment of this model can fix, but another model might.
FALLBACK_ONLY = (ContextWindowExceeded, GuardBlocked)


class _Skip(Exception):
    """A deployment was passed over without being tried (full, over its limits, window too small)."""

    def __init__(self, error: LlmdockError) -> None:
        super().__init__(error.message)
        self.error = error


class ModelRoute(Backend):
    kind = "router"

    def __init__(
        self,
        name: str,
        config: ModelConfig,
        deployments: list[Deployment],
        settings: Settings,
        shared: SharedState | None = None,
    ) -> None:
        # A route has no parameters of its own: it does not go through Backend's parameter validation.
        self.spec = BackendSpec(
            name=name, task=config.task, description=config.description, where=("models", name)
        )
        self.name = name
        self.settings = settings
        self.model_config = config
        self.deployments = deployments
        self.fallbacks: list[ModelRoute] = []
        self.order = STRATEGIES[config.routing]
        self.rng = random.Random()
        self._turns = itertools.count()
        self._health_task: asyncio.Task[None] | None = None
        self.shared = shared
        self._sync_task: asyncio.Task[None] | None = None
        self._announcing: set[asyncio.Task[None]] = set()
        if shared is not None:
            for dep in deployments:
                dep.breaker.on_trip = functools.partial(self._announce_trip, dep)
        self.loaded = False
        self._in_flight = 0
        self._limit = 1 << 30

    # --- lifecycle -----------------------------------------------------------------------------------
    @property
    def lazy(self) -> bool:
        return all(getattr(d.backend.params, "lazy", False) for d in self.deployments)

    async def start(self) -> None:
        for dep in self.deployments:
            await dep.backend.start()
        self.loaded = True
        interval = self.model_config.health_check_interval_s
        if interval > 0 and self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop(interval))
        if self.shared is not None and self._sync_task is None:
            self._sync_task = asyncio.create_task(self._breaker_sync_loop(BREAKER_SYNC_S))

    async def close(self) -> None:
        for task in (self._health_task, self._sync_task):
            if task is not None:
                task.cancel()
        for dep in self.deployments:
            await dep.backend.close()

    # --- breaker state shared between workers (Redis) ------------------------------------------------------
    def _announce_trip(self, dep: Deployment) -> None:
        shared = self.shared
        if shared is None:
            return
        key, ttl_ms = BREAKER_KEY + dep.id, int(dep.breaker.cooldown_s * 1000)

        async def announce() -> None:
            await shared.run(lambda: shared.client.set(key, repr(time.time()), px=ttl_ms), _none)

        try:
            task = asyncio.get_running_loop().create_task(announce())
        except RuntimeError:  # no loop (a breaker tripped outside serving): nothing to tell
            return
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _breaker_sync_loop(self, interval: float) -> None:
        """Adopt breakers other workers opened, so a dead deployment is avoided by all within ``interval``."""
        shared = self.shared
        assert shared is not None
        keys = [BREAKER_KEY + d.id for d in self.deployments]
        while True:
            await asyncio.sleep(interval)
            values = await shared.run(lambda: shared.client.mget(keys), _no_values)
            now = time.time()
            for dep, value in zip(self.deployments, values or [], strict=False):
                if value is not None:
                    dep.breaker.adopt_open(max(0.0, now - float(value)))

    async def _health_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for dep in self.deployments:
                try:
                    await asyncio.wait_for(dep.backend.health(), timeout=max(1.0, interval))
                except (LlmdockError, TimeoutError) as exc:
                    dep.breaker.record_failure(f"health check: {exc}")
                else:
                    if dep.breaker.state == "half_open":
                        dep.breaker.record_success()

    @property
    def context_window(self) -> int:
        windows = [d.backend.context_window for d in self.deployments]
        return 0 if not windows or 0 in windows else max(windows)

    @context_window.setter
    def context_window(self, value: int) -> None:
        return None

    def reachable_window(self) -> int:
        """The largest context window over this route and its fallbacks (0 = unknown/unbounded)."""
        windows = [r.context_window for r in self.chain()]
        return 0 if 0 in windows else max(windows)

    def chain(self) -> list[ModelRoute]:
        """This route, then its fallbacks depth-first, each once."""
        seen: list[ModelRoute] = []

        def visit(route: ModelRoute) -> None:
            if route in seen:
                return
            seen.append(route)
            for fb in route.fallbacks:
                visit(fb)

        visit(self)
        return seen

    def info(self) -> dict[str, Any]:
        first = self.deployments[0].backend.info()
        first.update(
            {
                "id": self.name,
                "task": self.task,
                "context_window": self.context_window,
                "loaded": all(d.backend.loaded for d in self.deployments),
                "description": self.spec.description,
                "routing": self.model_config.routing,
                "deployments": len(self.deployments),
                "fallbacks": [f.name for f in self.fallbacks],
            }
        )
        return first

    def snapshot(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "routing": self.model_config.routing,
            "fallbacks": [f.name for f in self.fallbacks],
            "deployments": [d.snapshot() for d in self.deployments],
        }

    def count_tokens(self, text: str) -> int:
        return self.deployments[0].backend.count_tokens(text)

    # --- preparing -----------------------------------------------------------------------------------
    def prepare(self, req: GenerationRequest) -> None:
        """Count tokens with the first deployment; refuse only what no deployment or fallback can take."""
        if "original_params" not in req.route:
            req.route["original_params"] = replace(req.params, stop=list(req.params.stop))
        try:
            self._prepare_for(self.deployments[0].backend, req)
        except ContextWindowExceeded:
            reachable = self.reachable_window()
            if reachable and reachable <= self.deployments[0].backend.context_window:
                raise
            # A larger window is reachable through another deployment or a fallback: the router goes there.

    @staticmethod
    def _prepare_for(backend: Backend, req: GenerationRequest) -> None:
        if req.route.get("prepared_for") is backend:
            return
        original = req.route.get("original_params")
        if (
            original is not None and "prepared_for" in req.route
        ):  # prepared before: start from the request's own
            req.params = replace(original, stop=list(original.stop))
        req.route["prepared_for"] = None
        backend.prepare(req)
        req.route["prepared_for"] = backend

    # --- routing -------------------------------------------------------------------------------------
    def candidates(self) -> list[Deployment]:
        if len(self.deployments) == 1:  # the common case: nothing to rank
            only = self.deployments[0]
            return [only] if only.breaker.allows() else []
        turn = next(self._turns)
        allowed = [d for d in self.deployments if d.breaker.allows()]
        ordered: list[Deployment] = []
        for _, group in itertools.groupby(
            sorted(allowed, key=lambda d: d.config.priority), key=lambda d: d.config.priority
        ):
            ordered += self.order(list(group), self.rng, turn)
        return ordered

    def _unavailable(self, skipped: list[LlmdockError]) -> LlmdockError:
        limited = [e for e in skipped if isinstance(e, RateLimited)]
        if limited and len(limited) == len(skipped):
            return limited[0]
        if skipped:
            return skipped[-1]
        waits = [float(str(d.breaker.snapshot().get("retry_in_s", 1.0))) for d in self.deployments]
        retry = max(1, int(min(waits) + 0.999)) if waits else 1
        return BackendUnavailable(
            f"every deployment of model {self.name!r} is unavailable (circuit open)",
            headers={"Retry-After": str(retry)},
        )

    async def _attempt(
        self,
        dep: Deployment,
        req: GenerationRequest | None,
        call: Callable[[Backend], Awaitable[T]],
        tokens: int,
    ) -> T:
        if not dep.has_room():  # checked before anything is counted
            raise _Skip(Overloaded(f"deployment {dep.id} is at max_in_flight", headers={"Retry-After": "1"}))
        if not await dep.limiter.try_acquire(tokens):
            retry = max(1, int(dep.limiter.retry_after() + 0.999))
            raise _Skip(
                RateLimited(
                    f"deployment {dep.id} is at its rpm/tpm limit", headers={"Retry-After": str(retry)}
                )
            )
        if req is not None:
            try:
                self._prepare_for(dep.backend, req)
            except ContextWindowExceeded as exc:
                raise _Skip(exc) from None
        try:
            dep.backend.admit()
        except Overloaded as exc:  # the backend's own queue is full
            raise _Skip(exc) from None
        dep.requests += 1
        dep.breaker.on_start()
        t0 = time.perf_counter()
        total = dep.config.timeout.total_s
        try:
            async with asyncio.timeout(total):
                result = await call(dep.backend)
        except (*RETRYABLE, *FALLBACK_ONLY) as exc:
            if isinstance(exc, Overloaded):
                raise _Skip(exc) from None
            if isinstance(exc, RETRYABLE):
                dep.failures += 1
                dep.breaker.record_failure(str(exc) or type(exc).__name__)
            raise
        finally:
            dep.backend.release()
        dep.observe_latency((time.perf_counter() - t0) * 1000)
        dep.breaker.record_success()
        return result

    async def _route(
        self, req: GenerationRequest | None, call: Callable[[Backend], Awaitable[T]], tokens: int = 0
    ) -> tuple[T, Deployment, ModelRoute]:
        """Run ``call`` on the best deployment of this model, retrying, then along the fallback chain."""
        last: LlmdockError | TimeoutError | None = None
        chain = self.chain()
        for route in chain:
            try:
                result, dep, attempts = await route._route_here(req, call, tokens)
            except (*RETRYABLE, *FALLBACK_ONLY) as exc:
                last = exc
                if route is not chain[-1]:
                    log.info("model %s failed (%s); falling back", route.name, exc)
                continue
            if req is not None:
                req.route["served"] = {
                    "model": route.name,
                    "deployment": dep.id,
                    "backend": dep.backend.kind,
                    "attempts": attempts,
                    "price": dep.config.price,
                }
            return result, dep, route
        if isinstance(last, TimeoutError) or last is None:
            raise BackendUnavailable(f"model {self.name!r}: the deployment timed out") from None
        raise last

    async def _route_here(
        self, req: GenerationRequest | None, call: Callable[[Backend], Awaitable[T]], tokens: int
    ) -> tuple[T, Deployment, int]:
        cfg = self.model_config
        failed: set[Deployment] = set()
        last: LlmdockError | TimeoutError | None = None
        for attempt in range(1 + cfg.retries):
            ranked = self.candidates()
            fresh = [d for d in ranked if d not in failed]
            skipped: list[LlmdockError] = []
            tried = None
            for dep in fresh or ranked:
                try:
                    return await self._attempt(dep, req, call, tokens), dep, attempt + 1
                except _Skip as skip:
                    skipped.append(skip.error)
                except RETRYABLE as exc:
                    last, tried = exc, dep
                    failed.add(dep)
                    break
            if tried is None:  # nothing could be tried this round
                raise last if last is not None else self._unavailable(skipped)
            if attempt == cfg.retries:
                break
            untried = [d for d in self.candidates() if d not in failed]
            if not untried:
                delay = self._backoff(last, attempt)
                if delay is None:
                    break
                await asyncio.sleep(delay)
        assert last is not None
        raise last

    def _backoff(self, exc: BaseException | None, round_no: int) -> float | None:
        """Seconds to wait before retrying the same deployments; None = don't (Retry-After too long)."""
        cfg = self.model_config
        if isinstance(exc, RateLimited):
            retry_after = exc.headers.get("Retry-After", "")
            if retry_after.replace(".", "", 1).isdigit():
                wait = float(retry_after)
                return wait if wait <= cfg.max_retry_after_s else None
        base: float = cfg.retry_backoff_s * (2**round_no)
        return base * (0.5 + self.rng.random())  # jitter: 50-150 %

    # --- the Backend interface -----------------------------------------------------------------------
    async def generate(self, req: GenerationRequest) -> Generation:
        result, dep, route = await self._route(req, lambda b: b.generate(req), req.n_prompt_tokens)
        await dep.limiter.add_tokens(result.prompt_tokens + result.completion_tokens)
        return result

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        result, dep, _ = await self._route(None, lambda b: b.embed(texts))
        await dep.limiter.add_tokens(result.prompt_tokens)
        return result

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        opened: dict[str, Any] = {}

        async def open_first(backend: Backend) -> StreamChunk | None:
            chunks = backend.stream(req)
            first_byte = next(
                d for d in self.all_deployments() if d.backend is backend
            ).config.timeout.first_byte_s
            try:
                async with asyncio.timeout(first_byte):
                    first = await anext(aiter(chunks), None)
            except BaseException:
                await chunks.aclose()  # type: ignore[attr-defined]
                raise
            opened["chunks"] = chunks
            return first

        first, dep, _ = await self._route(req, open_first, req.n_prompt_tokens)
        chunks: AsyncIterator[StreamChunk] = opened["chunks"]
        # The stream holds its deployment's slot until it ends (_attempt released it at the first chunk).
        dep.backend.hold()
        try:
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk
        except LlmdockError as exc:
            dep.failures += 1
            dep.breaker.record_failure(str(exc))
            raise
        finally:
            dep.backend.release()
            await chunks.aclose()  # type: ignore[attr-defined]

    def all_deployments(self) -> list[Deployment]:
        return [d for r in self.chain() for d in r.deployments]


def build_route(
    name: str,
    config: ModelConfig,
    settings: Settings,
    backend_classes: dict[str, type[Backend]],
    shared: SharedState | None = None,
) -> ModelRoute:
    from llmdock.errors import ConfigError

    deployments = []
    for i, (dcfg, path) in enumerate(config.deployment_configs()):
        where = ("models", name, *path)
        cls = backend_classes.get(dcfg.backend)
        if cls is None:
            known = ", ".join(sorted(backend_classes))
            raise ConfigError(
                f"unknown backend {dcfg.backend!r} (known: {known})",
                where=settings.where((*where, "backend")),
            )
        params = dcfg.backend_params()
        if dcfg.timeout.connect_s is not None and "connect_timeout_s" in cls.Params.model_fields:
            params.setdefault("connect_timeout_s", dcfg.timeout.connect_s)
        dep_id = dcfg.name or (name if len(config.deployment_configs()) == 1 else f"{name}#{i}")
        spec = BackendSpec(
            name=dep_id if dcfg.name else name,
            task=config.task,
            params=params,
            context_window=dcfg.context_window or config.context_window,
            max_queue=config.max_queue,
            description=config.description,
            where=where,
        )
        b = config.breaker
        deployments.append(
            Deployment(
                id=dep_id,
                backend=cls(spec, settings),
                config=dcfg,
                breaker=CircuitBreaker(
                    failures=b.failures, window_s=b.window_s, cooldown_s=b.cooldown_s, probes=b.probes
                ),
                limiter=SharedMinuteLimiter(shared, dep_id, MinuteLimiter(dcfg.rpm, dcfg.tpm))
                if shared is not None
                else MinuteLimiter(dcfg.rpm, dcfg.tpm),
            )
        )
    return ModelRoute(name, config, deployments, settings, shared)
