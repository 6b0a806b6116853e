"""The Ray executor: batch rows and evaluation cases computed by workers on a Ray cluster.

Each worker is an async Ray actor holding one object built on it by a :data:`~llmdock.jobs.executor.Builder`
(the served pipeline's rows, or a suite's case scorer, each with its own runtime: models, guards, cache),
answering many calls at once as the local runtime does (the embedded model batches them). Calls go to the
least busy worker. The process that called stays the source of truth: it reads the input, keeps the journal
or the evaluation run in the store, and writes the output in order, so a lost cluster loses only what was in
flight, which the next run asks again.

The address is checked before anything is sent: a Ray address that does not answer is an
:class:`ExecutorUnavailable` naming it, in seconds (``ray.init`` alone would wait minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from llmdock.errors import ConfigError, LlmdockError
from llmdock.jobs.batch import RowAnswer
from llmdock.jobs.executor import Builder, ExecutorSpec, ExecutorUnavailable

PROBE_S = 3.0
CLIENT_ATTEMPTS = 3
CLIENT_RETRY_S = 1.0
HINT = "start one (ray start --head) or give its address: --address HOST:PORT or ray://HOST:10001"


class Worker:
    """A Ray actor's state: the object its builder made, built on the first call (``ready``)."""

    def __init__(self, build: Builder) -> None:
        self._build = build
        self._obj: Any = None

    async def ready(self) -> bool:
        if self._obj is None:
            self._obj = await self._build()
        return True

    async def call(self, method: str, *args: Any) -> Any:
        await self.ready()
        return await getattr(self._obj, method)(*args)

    async def close(self) -> None:
        if self._obj is not None and hasattr(self._obj, "close"):
            await self._obj.close()
        self._obj = None


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray: pip install 'llmdock[ray]' (the same version as the cluster's)"
        ) from None
    return ray


def endpoint(address: str) -> tuple[str, int, str]:
    """(host, port, what ray.init is given) of ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    _ray()
    given = address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        try:
            found = canonicalize_bootstrap_address("auto")
        except (ConnectionError, ValueError) as exc:
            found, why = None, str(exc)
        else:
            why = "RAY_ADDRESS is not set and no `ray start` was run on this machine"
        if found is None:
            raise ExecutorUnavailable(f"no Ray cluster found for --address auto ({why}): {HINT}")
        address = given = found
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "ray") or not parts.hostname:
        raise ConfigError(f"--address {address!r}: auto, HOST:PORT or ray://HOST:PORT", param="address")
    try:
        port = parts.port or (10001 if parts.scheme == "ray" else 6379)
    except ValueError:
        raise ConfigError(f"--address {address!r}: the port is not a number", param="address") from None
    return parts.hostname, port, given


def probe(spec: ExecutorSpec) -> str:
    """What ``ray.init`` is given for the spec's address, once something answers there; ExecutorUnavailable
    (in seconds) when nothing does."""
    host, port, address = endpoint(spec.address)
    try:
        socket.create_connection((host, port), timeout=PROBE_S).close()
    except OSError as exc:
        raise ExecutorUnavailable(
            f"the Ray cluster at {spec.address} ({host}:{port}) does not answer ({exc.strerror or exc}): "
            f"nothing was run; {HINT}",
            param="address",
        ) from None
    return address


def connect(spec: ExecutorSpec) -> None:
    """``ray.init`` at the spec's address once it answers; ExecutorUnavailable (in seconds) when it does not.

    A ``ray://`` join is tried up to :data:`CLIENT_ATTEMPTS` times: the cluster's client proxy starts one server
    process per client, and one that dies while starting (a busy head, a port of its range taken) fails only
    that join, while the next gets a new process on the next port. A failed join is shut down before the next
    try or the error, so a later ``connect`` in this process starts from a clean state (a half-made client
    connection otherwise breaks every later ``ray.init``)."""
    ray = _ray()
    address = probe(spec)
    attempts = CLIENT_ATTEMPTS if address.startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        if ray.is_initialized():
            ray.shutdown()
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, namespace="llmdock")
            return
        except (ConnectionError, RuntimeError) as exc:
            error = exc
        with contextlib.suppress(Exception):
            ray.shutdown()
        if attempt < attempts:
            time.sleep(CLIENT_RETRY_S * attempt)
    tried = f" ({attempts} tries)" if attempts > 1 else ""
    raise ExecutorUnavailable(f"could not join the Ray cluster at {spec.address}{tried}: {error}") from None


async def _wait(ref: Any) -> Any:
    return await asyncio.wrap_future(ref.future())


class RayPool:
    """Workers on the cluster, each with the object ``build`` makes; ``call`` sends to the least busy one."""

    def __init__(self, build: Builder, spec: ExecutorSpec) -> None:
        self.build = build
        self.spec = spec
        self.actors: list[Any] = []
        self.busy: list[int] = []

    async def start(self) -> RayPool:
        """Connect and start the workers, each built before the first call (its errors are raised here)."""
        ray = _ray()
        connect(self.spec)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = int(ray.cluster_resources().get("CPU", 0))
        count = self.spec.workers or max(1, len(nodes))
        if count > cpus:
            raise ExecutorUnavailable(
                f"{count} Ray workers need {count} CPUs; the cluster at {self.spec.address} has {cpus}"
            )
        actor = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(Worker)
        self.actors = [actor.options(scheduling_strategy="SPREAD").remote(self.build) for _ in range(count)]
        self.busy = [0] * count
        try:
            await asyncio.wait_for(
                asyncio.gather(*(self._ready(a) for a in self.actors)), self.spec.start_timeout_s
            )
        except TimeoutError:
            await self.close()
            raise ExecutorUnavailable(
                f"the Ray workers did not start in {self.spec.start_timeout_s:g} s"
            ) from None
        except BaseException:
            await self.close()
            raise
        return self

    async def _ready(self, actor: Any) -> None:
        await self._result(actor.ready.remote())

    async def _result(self, ref: Any) -> Any:
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return await _wait(ref)
        except RayTaskError as exc:  # the worker's own error, e.g. a ConfigError building the runtime
            cause = exc.cause
            raise cause if isinstance(cause, LlmdockError) else exc from None
        except RayActorError as exc:
            raise ExecutorUnavailable(
                f"a Ray worker was lost ({type(exc).__name__}): what was done is kept; run again to resume"
            ) from None

    async def call(self, method: str, *args: Any) -> Any:
        i = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[i] += 1
        try:
            return await self._result(self.actors[i].call.remote(method, *args))
        finally:
            self.busy[i] -= 1

    async def close(self) -> None:
        """Close each worker's object (its runtime flushes its traces), then end the workers."""
        ray = _ray()
        if not self.actors:
            return
        await asyncio.gather(*(_wait(a.close.remote()) for a in self.actors), return_exceptions=True)
        for a in self.actors:
            ray.kill(a)
        self.actors = []
        ray.shutdown()


class RayRows:
    """A :class:`~llmdock.jobs.batch.RowAnswerer` whose rows are answered by the pool's workers."""

    def __init__(self, pool: RayPool) -> None:
        self.pool = pool

    async def answer(self, url: str, body: dict[str, Any]) -> RowAnswer:
        answer: RowAnswer = await self.pool.call("answer", url, body)
        return answer

    async def close(self) -> None:
        await self.pool.close()


class RayScorer:
    """An evaluation's :class:`~llmdock.evaluate.runner.CaseScoring` over the pool's workers."""

    def __init__(self, pool: RayPool) -> None:
        self.pool = pool

    async def score(self, target: str, case: Any, repeat: int) -> Any:
        return await self.pool.call("score", target, case, repeat)

    async def close(self) -> None:
        await self.pool.close()


async def pooled(build: Builder, spec: ExecutorSpec, wrap: Callable[[RayPool], Any]) -> Any:
    """``wrap`` of a started pool of workers built by ``build`` (RayRows or RayScorer)."""
    return wrap(await RayPool(build, spec).start())
