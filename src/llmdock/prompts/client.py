"""The prompt SDK: ``llmdock.prompts.get("support", label="production").render(question=...)``.

One call for application code, against either source:

- a running gateway (``base_url=`` or ``$LLMDOCK_URL``, its root with or without ``/v1``, with ``api_key=`` or ``$LLMDOCK_API_KEY``): ``GET
  /v1/prompts/{name}``, which a key with the inference permission may read for the templates it may use;
- else the local store named by the configuration (``config=`` or the usual config file / ``$LLMDOCK_CONFIG``).

Fetched versions are kept in the process for ``ttl`` seconds (Langfuse's SDK does the same), so a hot path
that calls ``get`` per request reads the source at most once per ``ttl``. When a refresh fails (the gateway
is down, the store unreachable) and an earlier copy exists, that copy is returned rather than failing the
caller's request: a prompt that worked a minute ago is better than an error. ``ttl=0`` always reads.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from llmdock.errors import Forbidden, LlmdockError, NotFound, from_gateway
from llmdock.prompts.apply import with_features
from llmdock.prompts.registry import DEFAULT_LABEL, PromptRegistry
from llmdock.prompts.render import render

DEFAULT_TTL_S = 60.0
URL_ENV = "LLMDOCK_URL"
KEY_ENV = "LLMDOCK_API_KEY"


@dataclass(frozen=True, slots=True)
class Prompt:
    """One stored version of a template, ready to render."""

    name: str
    version: int
    kind: str
    template: Any
    variables: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    labels: tuple[str, ...] = ()

    def render(self, **variables: Any) -> Any:
        """Messages (chat template) or a string (text template), rendered in the same sandbox as the gateway,
        with the few-shot examples and reasoning instruction the gateway would add. (Sending these messages
        yourself, split a reasoning answer with ``llmdock.prompts.split_reasoning``.)"""
        rendered = render(self.kind, self.template, variables, f"{self.name}@{self.version}")
        return with_features(rendered, self.config) if self.kind == "chat" else rendered

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> Prompt:
        return cls(
            name=view["name"],
            version=int(view["version"]),
            kind=view["kind"],
            template=view["template"],
            variables=tuple(view.get("variables") or ()),
            config=dict(view.get("config") or {}),
            labels=tuple(view.get("labels") or ()),
        )


_Key = tuple[str, str, int | None, str | None]
_cache: dict[_Key, tuple[float, Prompt]] = {}
_lock = threading.Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def get(
    name: str,
    *,
    version: int | None = None,
    label: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    config: Path | None = None,
    ttl: float = DEFAULT_TTL_S,
    timeout: float = 5.0,
) -> Prompt:
    """A template version: pinned by ``version``, by ``label``, else ``production``, else the latest."""
    url = (base_url or os.environ.get(URL_ENV) or "").rstrip("/").removesuffix("/v1")
    source = url if url else f"store:{config or ''}"
    key: _Key = (source, name, version, label)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    try:
        if url:
            prompt = _fetch(url, name, version, label, api_key or os.environ.get(KEY_ENV), timeout)
        else:
            prompt = _read_local(config, name, version, label)
    except (NotFound, Forbidden):  # an answer, not an outage: never hidden by a stale copy
        raise
    except (LlmdockError, httpx.HTTPError, OSError):
        if hit is not None:  # stale but known good: keep the caller serving
            return hit[1]
        raise
    with _lock:
        _cache[key] = (now, prompt)
    return prompt


def _read_local(config: Path | None, name: str, version: int | None, label: str | None) -> Prompt:
    from llmdock.config import load_settings
    from llmdock.store import Store

    store = Store(load_settings(config).resolved_database_url())
    try:
        registry = PromptRegistry(store)
        return Prompt.from_view(registry.described_one(registry.get(name, version=version, label=label)))
    finally:
        store.close()


def _fetch(
    url: str, name: str, version: int | None, label: str | None, key: str | None, timeout: float
) -> Prompt:
    params: dict[str, str | int] = {}
    if version is not None:
        params["version"] = version
    if label is not None:
        params["label"] = label
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{url}/v1/prompts/{name}", params=params, headers=headers, timeout=timeout)
    if response.status_code >= 400:
        raise from_gateway(response.status_code, response.text)
    return Prompt.from_view(response.json())


__all__ = ["DEFAULT_LABEL", "Prompt", "clear_cache", "get"]
