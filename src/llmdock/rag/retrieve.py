"""Retrieval over a knowledge base: dense, BM25, or both fused by reciprocal rank; filters; optional MMR.

This is the API the ground stage calls, and the one ``llmdock kb evaluate`` calls for its retriever scores
(``llmdock.rag.kbeval``)::

    retriever = Retriever(env, store)
    hits = await retriever.search("kb name", "question", k=10, mode="hybrid", filters={"kind": "html"})
    hits[0].source, hits[0].chunk_id, hits[0].score, hits[0].text

Indexes are built on first use and kept per process; a change to the knowledge base (its ``version``) is
noticed within ``VERSION_CHECK_S`` and the index rebuilt (the HNSW graph saved by version, so other
workers load it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from llmdock.errors import ConfigError
from llmdock.pipeline.env import StageEnv
from llmdock.rag import bases
from llmdock.rag.index import KbIndex, load_rows
from llmdock.store import Store

Mode = Literal["hybrid", "dense", "bm25"]
RRF_K = 60  # Cormack et al.'s constant for reciprocal rank fusion
VERSION_CHECK_S = 2.0


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    source: str
    title: str
    ordinal: int
    headings: list[str]
    text: str
    score: float  # the mode's own: cosine (dense), BM25 (bm25), fused reciprocal ranks (hybrid)
    scores: dict[str, float] = field(default_factory=dict)  # each retriever's score where it found the chunk

    def cite(self) -> dict[str, object]:
        return {"source": self.source, "chunk": self.chunk_id, "score": round(self.score, 6)}


class Retriever:
    def __init__(self, env: StageEnv, store: Store) -> None:
        self.env = env
        self.store = store
        self._indexes: dict[str, tuple[float, KbIndex]] = {}

    def index(self, name: str) -> KbIndex:
        """The knowledge base's current index (rebuilt if it changed since the last check)."""
        now = time.monotonic()
        cached = self._indexes.get(name)
        if cached is not None and now - cached[0] < VERSION_CHECK_S:
            return cached[1]
        if cached is not None and bases.version(self.store, cached[1].kb.id) == cached[1].kb.version:
            self._indexes[name] = (now, cached[1])
            return cached[1]
        kb = bases.get(self.store, name)
        built = KbIndex(kb, load_rows(self.store, kb), self.env.settings.home / "kb")
        self._indexes[name] = (now, built)
        return built

    async def embed_query(self, index: KbIndex, query: str) -> np.ndarray:
        result = await self.env.backend(index.kb.embedding_model).embed([query])
        vec = np.asarray(result.vectors[0], dtype=np.float32)
        if index.kb.dimensions and vec.shape[0] != index.kb.dimensions:
            raise ConfigError(
                f"knowledge base {index.kb.name!r} holds {index.kb.dimensions}-dimension vectors but "
                f"{index.kb.embedding_model!r} now gives {vec.shape[0]}: re-create it for this model",
                where=f"kb {index.kb.name}",
            )
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    async def search(
        self,
        kb: str,
        query: str,
        k: int = 4,
        mode: Mode = "hybrid",
        filters: dict[str, str] | None = None,
        mmr: float | None = None,
        min_score: float = 0.0,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; ``mmr`` (λ in [0, 1]) re-ranks the candidates for diversity."""
        index = self.index(kb)
        mask = index.mask(filters)
        depth = max(k * 4, 20) if mmr is not None or mode == "hybrid" else k
        qvec = await self.embed_query(index, query) if mode != "bm25" or mmr is not None else None
        dense = index.dense(qvec, depth, mask) if qvec is not None and mode != "bm25" else []
        dense = [(r, s) for r, s in dense if s >= min_score]
        lexical = index.lexical(query, depth, mask) if mode != "dense" else []
        ranked = _fuse(dense, lexical) if mode == "hybrid" else (dense or lexical)
        if mmr is not None and qvec is not None:
            ranked = _mmr(index.rows.vectors, qvec, ranked, k, mmr)
        per_row = {"dense": dict(dense), "bm25": dict(lexical)}
        return [_hit(index, row, score, per_row) for row, score in ranked[:k]]


def _fuse(*rankings: list[tuple[int, float]]) -> list[tuple[int, float]]:
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _) in enumerate(ranking, 1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused.items(), key=lambda x: -x[1])


def _mmr(
    vectors: np.ndarray, query: np.ndarray, ranked: list[tuple[int, float]], k: int, lam: float
) -> list[tuple[int, float]]:
    """Greedy maximal marginal relevance (Carbonell & Goldstein) over the candidates, by cosine."""
    rows = [r for r, _ in ranked]
    if not rows:
        return ranked
    score = dict(ranked)
    cand = vectors[rows]
    relevance = cand @ query
    chosen: list[int] = []
    redundancy = np.full(len(rows), -np.inf, dtype=np.float32)
    for _ in range(min(k, len(rows))):
        value = lam * relevance - (1 - lam) * redundancy if chosen else relevance.copy()
        value[chosen] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        redundancy = np.maximum(redundancy, cand @ cand[best])
    return [(rows[i], score[rows[i]]) for i in chosen]


def _hit(index: KbIndex, row: int, score: float, per_row: dict[str, dict[int, float]]) -> Hit:
    r = index.rows
    return Hit(
        chunk_id=int(r.chunk_ids[row]),
        source=r.sources[row],
        title=r.titles[row],
        ordinal=r.ordinals[row],
        headings=r.headings[row],
        text=r.texts[row],
        score=score,
        scores={name: found[row] for name, found in per_row.items() if row in found},
    )
