"""A running gateway follows the model registry: an alias moved, the new version served within a second.

A deployment whose ``model_path`` names a registry alias (``models:/NAME@production``; ``models:/NAME`` is the
latest version) is followed. Every ``SYNC_S`` seconds one poll (``Labels.pointing``: two small queries) reads
the versions those aliases point at; when one moved, the new version is loaded **beside** the old one (a new
backend pinned to ``models:/NAME/N``, on its own thread), requests switch to it when it is ready, and the old one
is closed once the requests it admitted have finished (``retire``). A failed load leaves the old version serving;
why is logged and shown under ``registry_follow`` in ``/ready`` until the alias moves again.

The same loading serves **variant routes**: a model served under a new name as a registered version with the
deployment settings of a configured model (a canary release's challenger, ``experiments.release``). They are
asked for with ``want`` and added to (or removed from) the gateway's routes when ready.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from llmdock.backends.base import Backend
from llmdock.errors import LlmdockError
from llmdock.registry.labels import LATEST, Labels
from llmdock.registry.models import URI_PREFIX, ModelRef, parse_uri
from llmdock.routing.build import deployment
from llmdock.routing.deployment import Deployment
from llmdock.routing.router import ModelRoute
from llmdock.store.engine import Store

SYNC_S = 0.5
IDLE_POLL_S = 0.05
log = logging.getLogger("llmdock.registry")
LOAD_ERRORS = (LlmdockError, OSError, MemoryError, RuntimeError, ValueError)


def followed_ref(backend: Backend) -> ModelRef | None:
    """The alias a backend serves from (None: a file, a package, or a pinned version)."""
    path = str(backend.spec.params.get("model_path", ""))
    if not path.startswith(URI_PREFIX):
        return None
    try:
        ref = parse_uri(path)
    except LlmdockError:
        return None
    return ref if ref.version is None else None


def served_version(backend: Backend) -> int | None:
    """The registry version a loaded backend serves (from its ``origin``), None before it loads."""
    name_version = backend.origin.get("model_version", "")
    tail = name_version.rpartition("/")[2]
    return int(tail) if tail.isdigit() else None


def pinned(backend: Backend, uri: str) -> Backend:
    """A new, unloaded backend like ``backend`` but serving ``uri``."""
    spec = replace(backend.spec, params={**backend.spec.params, "model_path": uri})
    return type(backend)(spec, backend.settings)


async def load(make: Callable[[], Backend]) -> Backend | str:
    """Build a backend with ``make`` and load it: the backend when it is ready, else why not (closed again)."""
    try:
        backend = make()
    except LlmdockError as exc:  # its parameters do not take a model_path, say
        return exc.one_line()
    try:
        await backend.start()
    except LOAD_ERRORS as exc:
        await backend.close()
        return exc.one_line() if isinstance(exc, LlmdockError) else f"{type(exc).__name__}: {exc}"
    except asyncio.CancelledError:  # no longer wanted while it loaded (a release ended meanwhile)
        await backend.close()
        raise
    return backend


async def retire(backend: Backend) -> None:
    """Close ``backend`` once nothing it admitted is still running (streams included)."""
    while backend.in_flight > 0:  # noqa: ASYNC110 (a plain counter the router keeps: nothing to wait on)
        await asyncio.sleep(IDLE_POLL_S)
    await backend.close()


@dataclass
class Followed:
    """One followed deployment and where its alias and its serving stand."""

    route: ModelRoute
    dep: Deployment
    ref: ModelRef
    serving: int | None = None
    failed: int | None = None  # the version whose load failed (not tried again until the alias moves on)
    error: str = ""
    switched_at: float | None = None

    def view(self) -> dict[str, Any]:
        return {
            "follows": str(self.ref),
            "serving": None if self.serving is None else f"{self.ref.name}/{self.serving}",
            "failed": None if self.failed is None else f"{self.ref.name}/{self.failed}",
            "error": self.error,
            "switched_at": self.switched_at,
        }


class RegistryFollow:
    """Keeps every followed deployment on its alias's version, and loads the variant routes asked for."""

    def __init__(self, routes: MutableMapping[str, ModelRoute], store: Store) -> None:
        self.routes = routes
        self.labels = Labels(store, "model")
        self.followed = [
            Followed(route, dep, ref)
            for route in routes.values()
            for dep in route.deployments
            if (ref := followed_ref(dep.backend)) is not None
        ]
        self.variants: dict[str, tuple[str, str]] = {}  # served name -> (configured model, registry URI)
        self.variant_errors: dict[str, str] = {}
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    # --- following aliases ------------------------------------------------------------------------------
    def read(self) -> dict[tuple[str, str], int]:
        """What the followed aliases point at now (runs in a thread: it queries the store)."""
        return self.labels.pointing({f.ref.name for f in self.followed})

    async def apply(self, pointing: Mapping[tuple[str, str], int]) -> None:
        """Switch every followed deployment whose alias moved (one at a time: each load takes a moment)."""
        for f in self.followed:
            if f.serving is None:
                f.serving = served_version(f.dep.backend)
            wanted = pointing.get((f.ref.name, f.ref.alias or LATEST))
            if wanted is None or wanted in (f.serving, f.failed) or not f.dep.backend.loaded:
                continue  # unset, current, failed already, or lazy and not loaded (it resolves when it loads)
            await self._switch(f, wanted)

    async def _switch(self, f: Followed, version: int) -> None:
        uri = f"{URI_PREFIX}{f.ref.name}/{version}"
        t0 = time.perf_counter()
        new = await load(functools.partial(pinned, f.dep.backend, uri))
        if isinstance(new, str):
            f.failed, f.error = version, new
            log.warning("%s: %s moved to %s, which cannot load; still serving %s/%s: %s",
                        f.route.name, f.ref, uri, f.ref.name, f.serving, new)  # fmt: skip
            return
        old, f.dep.backend = f.dep.backend, new
        log.info("%s: %s now serves %s (loaded in %.2f s); the old version closes when idle",
                 f.route.name, f.ref, uri, time.perf_counter() - t0)  # fmt: skip
        f.serving, f.failed, f.error, f.switched_at = version, None, "", time.time()
        self._spawn(retire(old))

    # --- variant routes ---------------------------------------------------------------------------------
    def want(self, variants: Mapping[str, tuple[str, str]]) -> None:
        """Serve exactly these variant routes (name -> (configured model, registry URI)): load the new ones in the
        background, remove the ones no longer wanted (closed when idle)."""
        for name in [n for n in self.variants if variants.get(n) != self.variants[n]]:
            spec = self.variants.pop(name)
            self.variant_errors.pop(name, None)
            task = self._loading.pop(name, None)
            if task is not None:
                task.cancel()
            route = self.routes.get(name)
            if route is not None and name != spec[0]:  # never a configured model
                del self.routes[name]
                self._spawn(_close_route(route))
        for name, (base, uri) in variants.items():
            if name not in self.variants and base in self.routes:
                self.variants[name] = (base, uri)
                self._loading[name] = self._spawn(self._add_variant(name, self.routes[base], uri))

    async def _add_variant(self, name: str, base: ModelRoute, uri: str) -> None:
        deps: list[Deployment] = []
        for d in base.deployments:
            backend = await load(functools.partial(pinned, d.backend, uri))
            if isinstance(backend, str):
                self.variant_errors[name] = backend
                log.warning("variant %s (%s as %s) cannot load: %s", name, uri, base.name, backend)
                for loaded in deps:
                    await loaded.backend.close()
                return
            deps.append(deployment(f"{d.id}@{name}", backend, d.config, base.model_config, base.shared))
        route = ModelRoute(name, base.model_config, deps, base.settings, base.shared)
        route.loaded = True
        self.routes[name] = route
        self._loading.pop(name, None)
        log.info("variant %s serves %s with the settings of %s", name, uri, base.name)

    # --- running ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For ``/ready``: each followed model, and the variant routes (loaded, loading or failed)."""
        out: dict[str, Any] = {f.dep.id: f.view() for f in self.followed}
        for name, (base, uri) in self.variants.items():
            state = (
                "loaded" if name in self.routes else "failed" if name in self.variant_errors else "loading"
            )
            out[name] = {"variant_of": base, "serves": uri, "state": state,
                         "error": self.variant_errors.get(name, "")}  # fmt: skip
        return out

    def start(self, reads: Callable[[], dict[tuple[str, str], int]] | None = None) -> None:
        if self.followed and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(reads or self.read))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for task in [*self._loading.values()]:
            task.cancel()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _loop(self, reads: Callable[[], dict[tuple[str, str], int]]) -> None:
        while True:
            await asyncio.sleep(SYNC_S)
            try:
                pointing = await asyncio.to_thread(reads)
            except (LlmdockError, SQLAlchemyError) as exc:  # store away: keep serving what we have
                log.warning("registry follow: cannot read the store: %s", str(exc).splitlines()[0])
                continue
            await self.apply(pointing)


async def _close_route(route: ModelRoute) -> None:
    route.watch.stop()
    for d in route.deployments:
        await retire(d.backend)
