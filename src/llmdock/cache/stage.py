"""The cache stage: answers from the exact or the semantic cache before generate runs, and fills both after.

Placed before ``generate`` in the pipeline. On a hit it sets ``ctx.generation`` (generate then skips; a
stream replays the cached answer). On a miss it registers a callback that stores the answer once the
request succeeded. ``Cache-Control: no-cache`` bypasses both caches for one request.

Keys: the exact key hashes the normalized request (model, messages or prompt, sampling parameters, seed)
and the tenant namespace. Semantic entries live in scopes of model + prompt template + system prompt +
namespace, so no tenant ever receives another's answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from llmdock.backends.base import Generation
from llmdock.cache.semantic import SemanticIndex, SharedSemanticLog
from llmdock.cache.stores import CacheStore, MemoryLRU, failover_store
from llmdock.config import CacheSettings, Settings
from llmdock.errors import LlmdockError
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.env import StageEnv

if TYPE_CHECKING:
    from llmdock.privacy.privacy_policy import PrivacyPolicy
    from llmdock.shared_state import SharedState

log = logging.getLogger("llmdock.cache")


def exact_key(ctx: RequestContext) -> str:
    req = ctx.request
    assert req is not None
    p = req.params
    material = {
        "model": ctx.model,
        "op": ctx.operation,
        "messages": req.messages,
        "prompt": req.prompt,
        "params": [
            p.max_tokens,
            p.temperature,
            p.top_p,
            p.stop,
            p.seed,
            p.presence_penalty,
            p.frequency_penalty,
        ],
        "ns": ctx.namespace,
        "structured": [req.grammar, req.extra] if req.extra or req.grammar else None,  # formats, tools
    }
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _semantic_parts(ctx: RequestContext) -> tuple[str, str]:
    """(scope, text to embed): system messages go into the scope, the rest is what is compared."""
    req = ctx.request
    assert req is not None
    if req.messages is None:
        system, text = "", req.prompt or ""
    else:
        system = "\n".join(
            str(m.get("content")) for m in req.messages if m.get("role") in ("system", "developer")
        )
        text = "\n".join(
            f"{m.get('role')}: {m.get('content')}"
            for m in req.messages
            if m.get("role") not in ("system", "developer")
        )
    template = str(ctx.attributes.get("llmdock.prompt_template", ""))
    scope = hashlib.sha256(f"{ctx.model}\0{template}\0{system}\0{ctx.namespace}".encode()).hexdigest()
    return scope, text


def _encode(gen: Generation) -> bytes:
    return orjson.dumps(
        {"text": gen.text, "p": gen.prompt_tokens, "c": gen.completion_tokens, "f": gen.finish_reason}
    )


def _decode(raw: bytes) -> Generation:
    d = orjson.loads(raw)
    return Generation(d["text"], d["p"], d["c"], d["f"])


class CacheStage:
    name = "cache"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: CacheStore = MemoryLRU(settings.cache.max_entries)
        self.semantic = SemanticIndex(max_entries=settings.cache.max_entries)
        self.env: StageEnv | None = None
        self.shared: SharedState | None = None
        self._configs: dict[str, CacheSettings] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self.shared_semantic: SharedSemanticLog | None = None
        self.privacy: PrivacyPolicy | None = None

    def bind(self, env: StageEnv) -> None:
        """Called once the runtime exists: the semantic cache embeds with the runtime's embedding model."""
        self.env = env
        self.privacy = env.privacy
        self.shared = env.shared
        if env.shared is not None:
            self.store = failover_store(env.shared, self.store)
            self.shared_semantic = SharedSemanticLog(env.shared.client, self.settings.cache.max_entries)

    def config_for(self, model: str) -> CacheSettings:
        cfg = self._configs.get(model)
        if cfg is None:
            overrides = self.settings.all_models()[model].cache if model in self.settings.all_models() else {}
            cfg = CacheSettings.model_validate({**self.settings.cache.model_dump(), **overrides})
            self._configs[model] = cfg
        return cfg

    async def _embed(self, text: str) -> np.ndarray | None:
        if self.env is None:
            return None
        try:
            result = await self.env.embed([text])
        except LlmdockError as exc:
            log.warning("semantic cache skipped: embedding failed: %s", exc.one_line())
            return None
        if result is None:
            return None
        vec = np.asarray(result.vectors[0], dtype=np.float32)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else None

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        if ctx.request is None or ctx.generation is not None:
            return ctx
        cfg = self.config_for(ctx.model)
        if not (cfg.exact or cfg.semantic):
            return ctx
        if "no-cache" in ctx.cache_control or "no-store" in ctx.cache_control:
            self._mark(ctx, "bypass")
            return ctx
        p = ctx.request.params
        key = None
        if cfg.exact and (not cfg.deterministic_only or p.temperature == 0 or p.seed is not None):
            key = exact_key(ctx)
            raw = await self.store.get(key)
            if raw is not None:
                ctx.generation = self._restored(ctx, _decode(raw))
                self._mark(ctx, "hit")
                return ctx
        scope = vector = None
        if cfg.semantic:
            scope, text = _semantic_parts(ctx)
            vector = await self._embed(text)
            await self._pull(scope)
            found = (
                self.semantic.lookup(scope, vector, cfg.similarity_threshold) if vector is not None else None
            )
            if found is not None:
                ctx.generation = self._restored(ctx, _decode(found[0]))
                self._mark(ctx, "semantic-hit", similarity=round(found[1], 4))
                return ctx
        if key is None and vector is None:
            self._mark(ctx, "skip")
            return ctx
        self._mark(ctx, "miss")
        ctx.on_success.append(lambda done: self._remember(done, cfg, key, scope, vector))
        return ctx

    def _remember(
        self,
        ctx: RequestContext,
        cfg: CacheSettings,
        key: str | None,
        scope: str | None,
        vector: np.ndarray | None,
    ) -> None:
        gen = ctx.generation
        if gen is None or gen.finish_reason == "cancelled":
            return
        value = _encode(gen)
        if scope is not None and vector is not None:
            self.semantic.add(scope, vector, value, cfg.ttl_s)
            if self.shared_semantic is not None:
                self._background(self._push(scope, vector, value, cfg.ttl_s))
        if key is not None and isinstance(self.store, MemoryLRU):
            self.store.put(key, value, cfg.ttl_s)
        elif key is not None:  # a network store: write in the background, off the response path
            self._background(self._set_shared(key, value, cfg.ttl_s))

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _pull(self, scope: str) -> None:
        shared, log_ = self.shared, self.shared_semantic
        if shared is not None and log_ is not None:
            await shared.run(lambda: log_.pull(scope, self.semantic), _nothing)

    async def _push(self, scope: str, vector: np.ndarray, value: bytes, ttl_s: float) -> None:
        shared, log_ = self.shared, self.shared_semantic
        if shared is not None and log_ is not None:
            shareable = await self._shareable(value)
            if shareable is not None:
                await shared.run(lambda: log_.push(scope, vector, shareable, ttl_s), _nothing)

    # -- privacy: what leaves the process is redacted (privacy.pii); see llmdock.privacy.privacy_policy ---

    async def _shareable(self, value: bytes) -> bytes | None:
        """The entry as it may leave the process; None if it may not (masked PII could not be put back)."""
        return value if self.privacy is None else await self.privacy.shareable(value)

    async def _set_shared(self, key: str, value: bytes, ttl_s: float) -> None:
        shareable = await self._shareable(value)
        if shareable is not None:
            await self.store.set(key, shareable, ttl_s)

    def _restored(self, ctx: RequestContext, gen: Generation) -> Generation:
        """A shared entry was stored pseudonymised: put back the values this request's own prompt holds."""
        if self.privacy is None or self.privacy.pseudonym_key is None or ctx.request is None:
            return gen
        req = ctx.request
        source = "\n".join(str(m.get("content")) for m in req.messages or []) or (req.prompt or "")
        gen.text = self.privacy.restore(gen.text, source)
        return gen

    @staticmethod
    def _mark(ctx: RequestContext, state: str, **extra: Any) -> None:
        ctx.attributes["llmdock.cache"] = state
        ctx.annotate(**{"llmdock.cache": state, **{f"llmdock.cache.{k}": v for k, v in extra.items()}})


async def _nothing() -> None:
    return None
