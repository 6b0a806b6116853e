"""Knowledge bases on both stores: the same tables, ingest, re-ingest and hybrid search on SQLite and on a
real PostgreSQL (no pgvector there: the vector index is built in process from the stored float32 rows)."""

from __future__ import annotations

from pathlib import Path

from llmdock.rag import bases
from llmdock.rag.index import EXACT_BELOW
from llmdock.rag.ingest import Ingest
from llmdock.rag.retrieve import Retriever
from llmdock.runtime import Runtime
from tests.conftest import fake_settings


async def test_ingest_and_search_on_the_store(db_url: str, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(EXACT_BELOW // 8 + 10):  # past EXACT_BELOW chunks: the HNSW graph is built and saved
        lines = "\n\n".join(f"Paragraph {j} of document {i} mentions term{i}x{j} once." for j in range(9))
        (docs / f"{i}.md").write_text(f"# Document {i}\n\n{lines}\n")
    settings = fake_settings(tmp_path, database_url=db_url)
    settings.rag.chunk_tokens = 20
    settings.rag.chunk_overlap = 0
    rt = Runtime(settings)
    assert rt.store is not None
    kb = bases.create(rt.store, "kb", "fake-embed")
    report = await Ingest(rt.stage_env, rt.store, kb).run([docs])
    assert report.chunks >= EXACT_BELOW
    retriever = Retriever(rt.stage_env, rt.store)
    hits = await retriever.search("kb", "term17x4", k=3, mode="bm25")
    assert hits[0].source.endswith("/17.md")
    assert hits[0].headings == ["Document 17"]
    fused = await retriever.search("kb", "term17x4", k=3, mode="hybrid")  # fake vectors: BM25 finds it
    assert hits[0].chunk_id in [h.chunk_id for h in fused]
    assert list((tmp_path / "kb").glob("*.usearch"))  # saved, for the next process to load
    dense = await retriever.search("kb", "anything", k=5, mode="dense")
    assert len(dense) == 5
    again = await Ingest(rt.stage_env, rt.store, bases.get(rt.store, "kb")).run([docs])
    assert again.unchanged == report.added
    assert again.embedded == 0
    await rt.close()
