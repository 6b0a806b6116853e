"""Routes built from the settings: one ModelRoute per model name, a Deployment per configured deployment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.backends.base import Backend, BackendSpec
from llmdock.config import DeploymentConfig, ModelConfig, Settings
from llmdock.errors import ConfigError
from llmdock.limits import MinuteLimiter, SharedMinuteLimiter
from llmdock.routing.breaker import CircuitBreaker
from llmdock.routing.deployment import Deployment
from llmdock.routing.router import ModelRoute

if TYPE_CHECKING:
    from llmdock.shared_state import SharedState


def build_route(
    name: str,
    config: ModelConfig,
    settings: Settings,
    backend_classes: dict[str, type[Backend]],
    shared: SharedState | None = None,
) -> ModelRoute:
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
        deployments.append(deployment(dep_id, cls(spec, settings), dcfg, config, shared))
    return ModelRoute(name, config, deployments, settings, shared)


def deployment(
    dep_id: str, backend: Backend, dcfg: DeploymentConfig, config: ModelConfig, shared: SharedState | None
) -> Deployment:
    """A deployment of ``backend`` with its own breaker and limiter, as the model's config sets them."""
    b = config.breaker
    return Deployment(
        id=dep_id,
        backend=backend,
        config=dcfg,
        breaker=CircuitBreaker(
            failures=b.failures, window_s=b.window_s, cooldown_s=b.cooldown_s, probes=b.probes
        ),
        limiter=SharedMinuteLimiter(shared, dep_id, MinuteLimiter(dcfg.rpm, dcfg.tpm))
        if shared is not None
        else MinuteLimiter(dcfg.rpm, dcfg.tpm),
    )
