"""Retrieval: filters, fusion and MMR change what comes back; the glossary links terms in a query."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.errors import InvalidRequest
from llmdock.rag import bases
from llmdock.rag.glossary import linked, read_glossary
from llmdock.rag.ingest import Ingest
from llmdock.rag.retrieve import Retriever
from llmdock.runtime import Runtime
from tests.conftest import fake_settings


async def test_filters_modes_and_mmr(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "a").mkdir(parents=True)
    (docs / "b").mkdir()
    for i in range(3):
        (docs / "a" / f"{i}.txt").write_text(f"Turbines spin in the wind farm number {i}.\n")
    (docs / "b" / "x.md").write_text("# Farm\n\nTurbines spin in the wind farm number 0.\n")
    rt = Runtime(fake_settings(tmp_path))
    assert rt.store is not None
    await Ingest(rt.stage_env, rt.store, bases.create(rt.store, "kb", "fake-embed")).run([docs])
    r = Retriever(rt.stage_env, rt.store)
    everything = await r.search("kb", "turbines wind farm", k=10, mode="bm25")
    assert len(everything) == 4
    only_b = await r.search("kb", "turbines wind farm", k=10, mode="hybrid", filters={"source": "*/b/*"})
    assert [Path(h.source).name for h in only_b] == ["x.md"]
    assert only_b[0].headings == ["Farm"]
    md = await r.search("kb", "turbines", k=10, filters={"kind": "markdown"})
    assert {h.source for h in md} == {only_b[0].source}
    hybrid = await r.search("kb", "turbines wind farm number 0", k=4, mode="hybrid")
    assert set(hybrid[0].scores) == {"dense", "bm25"}  # found by both, fused
    diverse = await r.search("kb", "turbines wind farm number 0", k=2, mode="dense", mmr=0.0)
    assert len({h.chunk_id for h in diverse}) == 2
    with pytest.raises(InvalidRequest, match="unknown filter 'colour'"):
        await r.search("kb", "x", filters={"colour": "red"})
    await rt.close()


def test_glossary_terms_link_whole_words_longest_first(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("JSON: JavaScript Object Notation.\nJSON decoder: json.JSONDecoder.\nGIL: global lock.\n")
    glossary = read_glossary(path)
    assert linked(glossary, "Does the json decoder hold the gil?") == {
        "JSON decoder": "json.JSONDecoder.",
        "GIL": "global lock.",
    }
    assert linked(glossary, "JSONL files") == {}
    path.write_text("JSON: JavaScript Object Notation.\nGIL:\n")
    with pytest.raises(InvalidRequest, match="the definition must be non-empty") as err:
        read_glossary(path)
    assert err.value.one_line().startswith(f"{path}:2: GIL: ")
