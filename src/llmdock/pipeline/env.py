"""StageEnv: what a stage may use once the runtime is built — never the Runtime itself.

Stages are created from the settings alone (``factory(settings)``), then bound once with ``stage.bind(env)``
when every model, the store and the plugins exist. The environment is deliberately narrow: the settings,
the model lookup, the default embedder, the store, Redis-shared state, the privacy policy and what plugins
registered. A new stage (ground, evaluate) takes what it needs from here and nothing else, so it runs the
same in the gateway, in a batch job and inside an evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmdock.backends.base import Backend, EmbeddingResult
from llmdock.config import Settings

if TYPE_CHECKING:
    from llmdock.privacy.privacy_policy import PrivacyPolicy
    from llmdock.shared_state import SharedState
    from llmdock.store.engine import Store


@dataclass(frozen=True)
class StageEnv:
    """The runtime's services, as stages see them."""

    settings: Settings
    backend: Callable[[str], Backend]
    """The routed model by name (``ModelNotFound`` for an unknown one): what a request to that model gets."""
    store: Store | None = None
    """The store (traces, registries); ``None`` when the runtime runs without one."""
    shared: SharedState | None = None
    """State shared with other workers through Redis; ``None`` without ``redis_url``."""
    privacy: PrivacyPolicy | None = None
    """Redaction and pseudonyms for anything that leaves the process (shared caches, logs)."""
    registered: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """What the plugins registered beyond stages and backends, by kind (``"detectors"``: name → factory)."""

    async def embed(self, texts: list[str]) -> EmbeddingResult | None:
        """The default embedding model's vectors, or ``None`` when no embedding model is configured."""
        name = self.settings.default_embedding_model
        if not name:
            return None
        return await self.backend(name).embed(texts)

    def plugins(self, kind: str) -> Mapping[str, Any]:
        """The registered extensions of one kind (empty when none are)."""
        return self.registered.get(kind, {})
