"""The semantic cache: answers found by meaning, not by exact text.

Each scope (model + prompt template + tenant namespace) keeps its own matrix of unit vectors; a lookup is
one matrix-vector product, so 10,000 entries cost about a millisecond beyond the embedding itself. A
scope never sees another scope's entries, so one tenant never receives another's answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Scope:
    """A ring buffer of unit vectors: grows by doubling up to max_entries, then overwrites the oldest."""

    vectors: np.ndarray  # (capacity, dims) float32
    expires: np.ndarray  # (capacity,) float64
    values: list[bytes] = field(default_factory=list)
    added: int = 0

    @property
    def used(self) -> int:
        return len(self.values)


class SemanticIndex:
    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._scopes: dict[str, _Scope] = {}

    def lookup(self, scope: str, vector: np.ndarray, threshold: float) -> tuple[bytes, float] | None:
        """The closest entry at or above ``threshold`` cosine similarity (vectors are unit length)."""
        entry = self._scopes.get(scope)
        if entry is None or not entry.used or entry.vectors.shape[1] != vector.shape[0]:
            return None
        scores = entry.vectors[: entry.used] @ vector
        scores[entry.expires[: entry.used] < self.clock()] = -2.0
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score < threshold:
            return None
        return entry.values[best], score

    def add(self, scope: str, vector: np.ndarray, value: bytes, ttl_s: float) -> None:
        entry = self._scopes.get(scope)
        if entry is None:
            cap = min(64, self.max_entries)
            dims = vector.shape[0]  # the embedding model decides; a scope keeps its first dimensionality
            entry = self._scopes[scope] = _Scope(np.zeros((cap, dims), np.float32), np.zeros(cap))
        if entry.used < self.max_entries:
            slot = entry.used
            if slot == entry.vectors.shape[0]:
                cap = min(self.max_entries, 2 * slot)
                entry.vectors = np.resize(entry.vectors, (cap, entry.vectors.shape[1]))
                entry.expires = np.resize(entry.expires, cap)
            entry.values.append(value)
        else:
            slot = entry.added % self.max_entries
            entry.values[slot] = value
        entry.vectors[slot] = vector
        entry.expires[slot] = self.clock() + ttl_s
        entry.added += 1

    def size(self) -> int:
        return sum(s.used for s in self._scopes.values())
