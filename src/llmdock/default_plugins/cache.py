"""The ``cache`` stage: exact and semantic answer caches."""

from __future__ import annotations

from llmdock.hookspecs import StageFactory, hookimpl


@hookimpl
def llmdock_stages() -> dict[str, StageFactory]:
    from llmdock.cache import CacheStage

    return {"cache": CacheStage}
