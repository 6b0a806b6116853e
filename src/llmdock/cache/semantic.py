"""The semantic cache: answers found by meaning, not by exact text.

Each scope (model + prompt template + tenant namespace) keeps its own matrix of unit vectors; a lookup is
one matrix-vector product on one thread, so 10,000 entries cost 1-2 ms beyond the embedding itself. A
scope never sees another scope's entries, so one tenant never receives another's answer.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        # einsum, not ``@``: BLAS spreads a matrix-vector product over every core, and with the cores busy
        # (the event loop, the model threads) that measured 10x slower at the median than one thread.
        scores = np.einsum("ij,j->i", entry.vectors[: entry.used], vector.astype(np.float32, copy=False))
        scores[entry.expires[: entry.used] < self.clock()] = -2.0
        best = int(np.argmax(scores))
        score = float(scores[best])
        if score < threshold:
            return None
        return entry.values[best], score

    def add(self, scope: str, vector: np.ndarray, value: bytes, ttl_s: float) -> None:
        self.add_many(scope, vector[np.newaxis, :], [value], np.array([ttl_s]))

    def add_many(self, scope: str, vectors: np.ndarray, values: list[bytes], ttl_s: np.ndarray) -> None:
        """Add rows of ``vectors`` with their values, oldest first, in a few array operations.

        A worker pulling a full shared scope adds 10,000 entries at once: one by one that held the event
        loop for about 170 ms, in one block copy it takes a few.
        """
        entry = self._scopes.get(scope)
        if entry is None:
            cap = min(64, self.max_entries)
            dims = vectors.shape[1]  # the embedding model decides; a scope keeps its first dimensionality
            entry = self._scopes[scope] = _Scope(np.zeros((cap, dims), np.float32), np.zeros(cap))
        skip = max(0, len(values) - self.max_entries)  # would be overwritten by later ones of this call
        entry.added += skip
        values, vectors, ttl_s = values[skip:], vectors[skip:], ttl_s[skip:]
        # Until the buffer is full, ``added`` equals ``used`` and each entry goes to the end; after that
        # the oldest is overwritten. Both are slot (added + k) mod max_entries.
        slots = (entry.added + np.arange(len(values))) % self.max_entries
        wanted = min(self.max_entries, entry.used + len(values))
        if wanted > entry.vectors.shape[0]:
            cap = min(self.max_entries, max(wanted, 2 * entry.vectors.shape[0]))
            entry.vectors = np.resize(entry.vectors, (cap, entry.vectors.shape[1]))
            entry.expires = np.resize(entry.expires, cap)
        entry.vectors[slots] = vectors
        entry.expires[slots] = self.clock() + ttl_s
        entry.values.extend([b""] * (wanted - len(entry.values)))  # every new slot is assigned below
        for slot, value in zip(slots.tolist(), values, strict=True):
            entry.values[slot] = value
        entry.added += len(values)

    def size(self) -> int:
        return sum(s.used for s in self._scopes.values())


def pack_entry(vector: np.ndarray, value: bytes, expires_at: float) -> bytes:
    """One shared entry: dims (uint32), the float32 vector, expiry (wall-clock float64), the value."""
    v = vector.astype(np.float32)
    return struct.pack("<I", v.shape[0]) + v.tobytes() + struct.pack("<d", expires_at) + value


def unpack_entries(raws: list[bytes]) -> tuple[np.ndarray, list[bytes], np.ndarray]:
    """Entries of one scope at once: (vectors as rows, values, expiry times).

    The vectors go through one join and one ``frombuffer``: unpacked one by one, 10,000 entries took
    about 100 ms of the event loop. Entries of another dimensionality than the first are left out (a
    scope keeps its first dimensionality).
    """
    dims = struct.unpack_from("<I", raws[0])[0] if raws else 0
    end = 4 + 4 * dims
    same = [raw for raw in raws if struct.unpack_from("<I", raw)[0] == dims]
    vectors = np.frombuffer(b"".join([memoryview(raw)[4:end] for raw in same]), np.float32).reshape(-1, dims)
    expires = np.array([struct.unpack_from("<d", raw, end)[0] for raw in same], dtype=np.float64)
    return vectors, [raw[end + 8 :] for raw in same], expires


class SharedSemanticLog:
    """Shares semantic entries between gateway workers through Redis.

    Each scope is a Redis list of the newest ``max_entries`` packed entries plus a counter of all entries
    ever pushed. A worker pulls only what it has not seen (one GET when nothing is new) into its local
    index before a lookup, so the search itself stays a local matrix product.
    """

    def __init__(self, client: Any, max_entries: int, prefix: str = "llmdock:sem:") -> None:
        self.client = client
        self.max_entries = max_entries
        self.prefix = prefix
        self._seen: dict[str, int] = {}

    async def push(self, scope: str, vector: np.ndarray, value: bytes, ttl_s: float) -> None:
        key, counter = self.prefix + scope, self.prefix + "n:" + scope
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, pack_entry(vector, value, time.time() + ttl_s))
            pipe.ltrim(key, -self.max_entries, -1)
            pipe.expire(key, int(ttl_s) + 1)
            pipe.incr(counter)
            pipe.expire(counter, int(ttl_s) + 1)
            total = (await pipe.execute())[3]
        if int(total) == self._seen.get(scope, 0) + 1:
            self._seen[scope] = int(total)  # our own entry, already in the local index

    async def pull(self, scope: str, index: SemanticIndex) -> None:
        total = int(await self.client.get(self.prefix + "n:" + scope) or 0)
        new = total - self._seen.get(scope, 0)
        if new <= 0:
            return
        entries = await self.client.lrange(self.prefix + scope, -min(new, self.max_entries), -1)
        vectors, values, expires = unpack_entries(entries)
        ttl_s = expires - time.time()
        live = np.flatnonzero(ttl_s > 0)
        if len(live):
            index.add_many(scope, vectors[live], [values[i] for i in live.tolist()], ttl_s[live])
        self._seen[scope] = total
