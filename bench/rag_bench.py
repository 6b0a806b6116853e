"""Knowledge bases (issue 18), printed in one run: ingest throughput on the Python documentation, vector search
(usearch, the index llmdock uses, beside hnswlib and FAISS flat / HNSW) on 100,000 MiniLM-dimension vectors,
and the ground stage's added latency at 100,000 chunks.

Data: Debian's python3-doc (the Python 3.11 documentation as HTML, /usr/share/doc/python3.11/html, PSF
licence). Vectors are real all-MiniLM-L6-v2 embeddings of the ingested chunks; embedding 100,000 real chunks
takes hours on this 2-core machine, so the rest up to 100,000 are random convex mixtures of three real vectors
(renormalized): they stay in the narrow cone real MiniLM vectors occupy, unlike uniform random vectors, which
have no neighbourhoods at all. (Gaussian-noise copies of real vectors were tried first: clusters of 30+
near-ties whose exact top 10 is decided by the noise, which no graph index reproduces; not a fair test.) Queries are real MiniLM embeddings of the titles of pages that
were not ingested. Ground truth: exact inner products (numpy).

    python bench/rag_bench.py [--pages 40] [--vectors 100000] [--queries 200]
"""

from __future__ import annotations

import asyncio
import glob
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from harness import options  # noqa: E402

HOME = ROOT / "bench" / "results" / "rag-home"  # the ONNX export of MiniLM is cached here between runs
K = 10


def library_pages() -> list[Path]:
    pages = sorted(Path(p) for p in glob.glob("/usr/share/doc/python3*/html/library/*.html"))
    if not pages:
        sys.exit("python3-doc is not installed: bash scripts/system-deps.sh")
    return pages


async def ingest(runtime: Any, pages: list[Path]) -> tuple[Any, float]:
    from llmdock.rag import bases
    from llmdock.rag.ingest import Ingest

    await runtime.stage_env.embed(["warm up: load the model (and export it once)"])
    kb = bases.create(runtime.store, "pydocs", runtime.settings.default_embedding_model)
    t0 = time.perf_counter()
    report = await Ingest(runtime.stage_env, runtime.store, kb).run(pages)
    return report, time.perf_counter() - t0


def extend(real: np.ndarray, n: int, seed: int = 7) -> np.ndarray:
    """The real vectors, then random convex mixtures of three of them (renormalized) up to ``n``."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(real), size=(n - len(real), 3))
    weights = rng.dirichlet(np.ones(3), size=n - len(real)).astype(np.float32)
    mixed = np.einsum("nk,nkd->nd", weights, real[picks])
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return np.vstack([real, mixed]).astype(np.float32)


def timed_queries(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray
) -> tuple[list[np.ndarray], float]:
    found, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - t0) * 1000)
    return found, statistics.median(times)


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(map(int, f[:K])) & set(map(int, t))) / K for f, t in zip(found, truth, strict=True)])
    )


def engines(vectors: np.ndarray) -> dict[str, tuple[float, Callable[[np.ndarray], np.ndarray]]]:
    """name → (build seconds, one-query search) for each index, built on the same vectors."""
    import faiss
    import hnswlib

    from llmdock.rag.index import new_hnsw

    faiss.omp_set_num_threads(1)
    d, n = vectors.shape[1], len(vectors)
    out: dict[str, tuple[float, Callable[[np.ndarray], np.ndarray]]] = {}
    t0 = time.perf_counter()
    u = new_hnsw(d)
    u.add(np.arange(n, dtype=np.uint64), vectors, threads=2)
    built = time.perf_counter() - t0
    out["usearch HNSW (llmdock)"] = (built, lambda q: u.search(q, K, threads=1).keys)
    for ef in (32, 64, 128):
        out[f"usearch ef_search={ef}"] = (built, lambda q, ef=ef: _ef(u, ef).search(q, K, threads=1).keys)
    t0 = time.perf_counter()
    h = hnswlib.Index(space="ip", dim=d)
    h.init_index(max_elements=n, ef_construction=128, M=16)
    h.add_items(vectors, num_threads=2)
    h.set_ef(64)
    h.set_num_threads(1)
    out["hnswlib HNSW"] = (time.perf_counter() - t0, lambda q: h.knn_query(q, k=K)[0][0])
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(vectors)
    out["FAISS flat"] = (time.perf_counter() - t0, lambda q: flat.search(q[None, :], K)[1][0])
    faiss.omp_set_num_threads(2)
    t0 = time.perf_counter()
    fh = faiss.IndexHNSWFlat(d, 16, faiss.METRIC_INNER_PRODUCT)
    fh.hnsw.efConstruction = 128
    fh.add(vectors)
    fh.hnsw.efSearch = 64
    faiss.omp_set_num_threads(1)
    out["FAISS HNSW"] = (time.perf_counter() - t0, lambda q: fh.search(q[None, :], K)[1][0])
    return out


def _ef(index: Any, ef: int) -> Any:
    index.expansion_search = ef
    return index


def vector_table(vectors: np.ndarray, queries: np.ndarray, n_real: int) -> None:
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
    _, exact_p50 = timed_queries(lambda q: np.argsort(-(vectors @ q))[:K], queries)
    print(
        f"\nvector search: {len(vectors):,} vectors of {vectors.shape[1]} dims ({n_real:,} real MiniLM, the rest "
        f"mixtures of 3), {len(queries)} real queries, recall@{K} against exact inner products"
    )
    print(f"{'index':<24} {'recall@10':>9} {'P50 ms':>8} {'build s':>8}")
    print(f"{'numpy brute force':<24} {1.0:>9.3f} {exact_p50:>8.2f} {0.0:>8.1f}")
    for name, (build, search) in engines(vectors).items():
        found, p50 = timed_queries(search, queries)
        print(f"{name:<24} {recall(found, truth):>9.3f} {p50:>8.2f} {build:>8.1f}")


def fill_kb(runtime: Any, name: str, texts: list[str], vectors: np.ndarray) -> None:
    """A knowledge base of len(vectors) chunks (texts cycled, each its own row and vector), written in bulk."""
    import hashlib
    from datetime import UTC, datetime

    from sqlalchemy import insert, update

    from llmdock.rag import bases
    from llmdock.store.kb_rows import KbChunkRow, KbDocumentRow, KbEmbeddingRow, KnowledgeBaseRow

    kb = bases.create(runtime.store, name, runtime.settings.default_embedding_model)
    now = datetime.now(UTC)
    per_doc = 1000
    with runtime.store.engine.begin() as conn:
        for d in range(len(vectors) // per_doc):
            doc = conn.execute(
                insert(KbDocumentRow).values(
                    kb_id=kb.id,
                    source=f"synthetic/{d}.html",
                    kind="html",
                    title=f"page {d}",
                    content_hash="-",
                    chunks=per_doc,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            rows, embs = [], []
            for i in range(d * per_doc, (d + 1) * per_doc):
                h = hashlib.sha256(f"{i}".encode()).hexdigest()
                rows.append(
                    {
                        "kb_id": kb.id,
                        "document_id": doc,
                        "ordinal": i,
                        "text": texts[i % len(texts)],
                        "headings": [f"page {d}"],
                        "content_hash": h,
                        "tokens": 0,
                    }
                )
                embs.append(
                    {
                        "model": kb.embedding_model,
                        "content_hash": h,
                        "dimensions": vectors.shape[1],
                        "vector": vectors[i].tobytes(),
                    }
                )
            conn.execute(insert(KbChunkRow), rows)
            conn.execute(insert(KbEmbeddingRow), embs)
        conn.execute(
            update(KnowledgeBaseRow)
            .where(KnowledgeBaseRow.id == kb.id)
            .values(dimensions=vectors.shape[1], version=1)
        )


async def ground_latency(runtime: Any, questions: list[str]) -> tuple[float, float, float, int]:
    """(first request ms: the index built, P50 ms of the ground stage afterwards, P50 ms of the query
    embedding alone, hits per request)."""
    from llmdock.backends.base import GenerationRequest, SamplingParams
    from llmdock.pipeline.context import RequestContext
    from llmdock.rag.stage import CITATIONS, GroundStage

    stage = GroundStage(runtime.settings)
    stage.bind(runtime.stage_env)

    async def one(q: str) -> tuple[float, int]:
        req = GenerationRequest("chat", SamplingParams(), messages=[{"role": "user", "content": q}])
        ctx = RequestContext("chat", "grounded", runtime.backend("grounded"), request=req)
        t0 = time.perf_counter()
        await stage(ctx)
        return (time.perf_counter() - t0) * 1000, len(ctx.attributes[CITATIONS])

    first, _ = await one("warm-up: builds the index")
    times = [await one(q) for q in questions]
    embed_ms = []
    for q in questions:
        t0 = time.perf_counter()
        await runtime.stage_env.embed([q])
        embed_ms.append((time.perf_counter() - t0) * 1000)
    return first, statistics.median(t for t, _ in times), statistics.median(embed_ms), times[0][1]


async def main() -> None:
    from llmdock.config import ModelConfig, Settings
    from llmdock.rag.index import load_rows
    from llmdock.runtime import Runtime

    args = options(__doc__ or "")
    args.add_argument("--pages", type=int, default=40)
    args.add_argument("--vectors", type=int, default=100_000)
    args.add_argument("--queries", type=int, default=200)
    a = args.parse_args()
    pages = library_pages()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            home=HOME,
            database_url=f"sqlite:///{tmp}/kb.db",
            trace={"enabled": False},
            models={"grounded": ModelConfig(backend="fake", knowledge_base="big")},
        )
        runtime = Runtime(settings)
        try:
            report, seconds = await ingest(runtime, pages[: a.pages])
            print(
                f"ingest: {a.pages} pages of the Python docs, {report.chunks:,} chunks in {seconds:.1f} s = "
                f"{report.chunks / seconds:.1f} chunks/s (parse, chunk, embed in batches of "
                f"{settings.rag.embed_batch}, store)"
            )
            from llmdock.rag import bases

            kb = bases.get(runtime.store, "pydocs")
            rows = load_rows(runtime.store, kb)
            titles = [p.stem.replace("_", " ") + " module" for p in pages[a.pages : a.pages + a.queries]]
            queries = np.asarray((await runtime.stage_env.embed(titles)).vectors, dtype=np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            vectors = extend(rows.vectors, a.vectors)
            vector_table(vectors, queries, len(rows.vectors))
            fill_kb(runtime, "big", rows.texts, vectors)
            first, p50, embed_p50, hits = await ground_latency(runtime, titles)
            print(
                f"\nground stage at {a.vectors:,} chunks ({settings.rag.mode}, top {hits}; query embedding + "
                f"retrieval + context, no generation): P50 {p50:.1f} ms over {len(titles)} requests "
                f"(of which the MiniLM query embedding: {embed_p50:.1f} ms; first request, building BM25 and the HNSW "
                f"graph: {first / 1000:.1f} s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
        finally:
            await runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
