"""Response caching: exact (normalized request) and semantic (embedding similarity), memory or Redis."""

from llmdock.cache.stage import CacheStage

__all__ = ["CacheStage"]
