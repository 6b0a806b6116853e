"""The router: one model name served by several deployments, with retries, fallbacks and breakers.

A :class:`ModelRoute` looks like a Backend to the pipeline (a "routed backend"): ``generate``, ``stream``
and ``embed`` pick deployments by the configured strategy, skip those whose breaker is open, whose limits
are reached or whose window is too small, retry with exponential backoff and jitter (honouring
``Retry-After``), and finally fall back to other model names. Streams fail over only until the first
chunk; after that an error ends the stream.
"""

from __future__ import annotations

import asyncio
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
from llmdock.routing.deployment import Deployment
from llmdock.routing.strategies import STRATEGIES
from llmdock.routing.watch import RouteWatch

if TYPE_CHECKING:
    from llmdock.shared_state import SharedState

log = logging.getLogger("llmdock.router")
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
        self.shared = shared
        self.watch = RouteWatch(deployments, shared)
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
        self.watch.start(self.model_config.health_check_interval_s)

    async def close(self) -> None:
        self.watch.stop()
        for dep in self.deployments:
            await dep.backend.close()

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
        settle: bool,
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
        backend = dep.backend  # once, after the last await before admission: a registry follow may swap it
        if req is not None:
            try:
                self._prepare_for(backend, req)
            except ContextWindowExceeded as exc:
                raise _Skip(exc) from None
        try:
            backend.admit()
        except Overloaded as exc:  # the backend's own queue is full
            raise _Skip(exc) from None
        dep.requests += 1
        dep.breaker.on_start()
        t0 = time.perf_counter()
        total = dep.config.timeout.total_s
        try:
            async with asyncio.timeout(total):
                result = await call(backend)
        except RETRYABLE as exc:
            if isinstance(exc, Overloaded):
                dep.breaker.abandon()
                raise _Skip(exc) from None
            dep.failures += 1
            dep.breaker.record_failure(str(exc) or type(exc).__name__)
            raise
        except BaseException:  # cancelled, or refused for its content: says nothing about the deployment
            dep.breaker.abandon()
            raise
        finally:
            backend.release()
        dep.observe_latency((time.perf_counter() - t0) * 1000)
        if settle:  # else the caller records the verdict (a stream: when it ends)
            dep.breaker.record_success()
        return result

    async def _route(
        self,
        req: GenerationRequest | None,
        call: Callable[[Backend], Awaitable[T]],
        tokens: int = 0,
        *,
        settle: bool = True,
    ) -> tuple[T, Deployment, ModelRoute]:
        """Run ``call`` on the best deployment of this model, retrying, then along the fallback chain."""
        last: LlmdockError | TimeoutError | None = None
        chain = self.chain()
        for route in chain:
            try:
                result, dep, attempts = await route._route_here(req, call, tokens, settle)
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
                    "origin": dep.backend.origin,
                }
            return result, dep, route
        if isinstance(last, TimeoutError) or last is None:
            raise BackendUnavailable(f"model {self.name!r}: the deployment timed out") from None
        raise last

    async def _route_here(
        self,
        req: GenerationRequest | None,
        call: Callable[[Backend], Awaitable[T]],
        tokens: int,
        settle: bool,
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
                    return await self._attempt(dep, req, call, tokens, settle), dep, attempt + 1
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
                (d.config.timeout.first_byte_s for d in self.all_deployments() if d.backend is backend), None
            )
            try:
                async with asyncio.timeout(first_byte):
                    first = await anext(aiter(chunks), None)
            except BaseException:
                await chunks.aclose()  # type: ignore[attr-defined]
                raise
            opened["chunks"], opened["backend"] = chunks, backend
            return first

        # A stream is judged by how it ends, not by its first chunk: a half-open probe cut mid-way reopens.
        first, dep, _ = await self._route(req, open_first, req.n_prompt_tokens, settle=False)
        chunks: AsyncIterator[StreamChunk] = opened["chunks"]
        backend: Backend = opened["backend"]  # holds its slot until the stream ends, even if swapped since
        backend.hold()
        try:
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk
        except LlmdockError as exc:
            dep.failures += 1
            dep.breaker.record_failure(str(exc))
            raise
        except BaseException:  # the client went away
            dep.breaker.abandon()
            raise
        else:
            dep.breaker.record_success()
        finally:
            backend.release()
            await chunks.aclose()  # type: ignore[attr-defined]

    def all_deployments(self) -> list[Deployment]:
        return [d for r in self.chain() for d in r.deployments]
