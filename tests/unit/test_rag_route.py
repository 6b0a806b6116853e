"""The ground stage's query rewriter and knowledge-base router (fake models), and their scores in ``kb evaluate``:
a follow-up retrieved with and without its rewrite, and the share of questions routed where they came from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmdock.config import ModelConfig
from llmdock.rag import bases
from llmdock.rag.index import load_rows
from llmdock.rag.ingest import Ingest
from llmdock.rag.kbeval import Plan, evaluate_kb
from llmdock.rag.testset_file import load_testset, row, write_testset
from llmdock.runtime import Runtime
from llmdock.store.traces import get_trace
from tests.conftest import fake_settings
from tests.unit.test_rag_kbeval import DOCS

STANDALONE = "how long does sourdough dough rise"  # what the fake rewriter makes of any follow-up
MODELS = {
    "fake": ModelConfig(backend="fake"),
    "fake-embed": ModelConfig(backend="fake", task="embedding"),
    "rewriter": ModelConfig(backend="fake", reply=STANDALONE),
    "judge": ModelConfig(backend="fake", reply='{"reason": "ok", "score": 1}'),
    "both": ModelConfig(backend="fake", knowledge_base=["code", "kb"]),
}
CODE = {"lists.txt": "Python lists keep items in order. Append adds an item at the end of the list."}
FOLLOW_UP = [
    {"role": "user", "content": "Tell me about bread"},
    {"role": "assistant", "content": "Sourdough is a bread."},
    {"role": "user", "content": "and how long does it take?"},
]


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    settings = fake_settings(tmp_path, models=MODELS, **overrides)
    settings.rag.mode = "bm25"  # fake vectors are hashes: BM25 makes the rankings meaningful
    settings.rag.rewrite_model = "rewriter"
    settings.rag.route_by = "description"  # a question equal to a description is closest to it
    return settings


async def _bases(tmp_path: Path) -> dict[str, int]:
    """Knowledge bases ``kb`` (turbines, bread, tides) and ``code``; the bread chunk's id."""
    rt = Runtime(_settings(tmp_path))
    assert rt.store is not None
    for name, files in (("kb", DOCS), ("code", CODE)):
        folder = tmp_path / name
        folder.mkdir()
        for file, text in files.items():
            (folder / file).write_text(text + "\n")
        await Ingest(rt.stage_env, rt.store, bases.create(rt.store, name, "fake-embed")).run([folder])
    bases.describe(rt.store, "kb", STANDALONE)
    bases.describe(rt.store, "code", "Python lists")
    rows = load_rows(rt.store, bases.get(rt.store, "kb"))
    found = {Path(s).name: int(c) for s, c in zip(rows.sources, rows.chunk_ids, strict=True)}
    code = load_rows(rt.store, bases.get(rt.store, "code"))
    found["lists.txt"] = int(code.chunk_ids[0])
    await rt.close()
    return found


async def test_a_follow_up_is_rewritten_and_routed_before_the_ground_stage_retrieves(
    tmp_path: Path, gateway_factory: Callable[..., Any]
) -> None:
    await _bases(tmp_path)
    settings = _settings(tmp_path, pipeline=["preprocess", "ground", "generate", "postprocess"])
    settings.rag.top_k = 1
    gw = await gateway_factory(settings)
    r = await gw.client.post("/v1/chat/completions", json={"model": "both", "messages": FOLLOW_UP})
    assert r.status_code == 200, r.text
    body = r.json()
    [citation] = body["citations"]
    assert citation["source"].endswith("bread.txt")  # "how long does it take?" alone finds nothing
    assert body["choices"][0]["message"]["content"].endswith("Question: and how long does it take?")
    gw.flush_traces()
    _, spans = get_trace(gw.runtime.store, body["id"].removeprefix("chatcmpl-"))
    [ground] = [s for s in spans if s.name == "ground"]
    assert ground.attributes["llmdock.ground.rewritten"] == STANDALONE
    assert ground.attributes["llmdock.ground.kb"] == "kb"
    routes = ground.attributes["llmdock.ground.routes"]
    assert routes["kb"] > routes["code"]


async def test_the_rewriter_and_the_router_are_scored_where_the_ground_stage_uses_them(
    tmp_path: Path,
) -> None:
    chunks = await _bases(tmp_path)
    rt = Runtime(_settings(tmp_path))
    assert rt.store is not None
    testset = tmp_path / "t.jsonl"
    write_testset(
        testset,
        [
            row("follow", FOLLOW_UP, "many hours", "", {"source_chunks": [chunks["bread.txt"]], "kb": "kb"}),
            row(
                "lists",
                "Python lists",
                "in order",
                "",
                {"source_chunks": [chunks["lists.txt"]], "kb": "code"},
            ),
            row("astray", "Python lists", "x", "", {"source_chunks": [chunks["tides.txt"]], "kb": "kb"}),
        ],
    )
    plan = Plan("kb", "both", judge="judge", generate=False)
    report = await evaluate_kb(rt, rt.store, rt.plugins.metrics, plan, testset, load_testset(testset))
    by = {(r.target, r.case_id): r for r in report.results}
    assert {t for t, _ in by} == {
        "retriever:dense",
        "retriever:bm25",
        "retriever:hybrid",
        "rewriter:rewriter",
        "router:both",
    }
    assert not by[("retriever:bm25", "follow")].passed  # as asked, the follow-up finds nothing
    assert by[("rewriter:rewriter", "follow")].passed  # rewritten, it finds the bread chunk
    assert by[("rewriter:rewriter", "follow")].scores["mrr"].value == 1.0
    assert {cid for t, cid in by if t == "rewriter:rewriter"} == {"follow"}  # only follow-ups are rewritten
    assert {cid for t, cid in by if t == "retriever:bm25"} == {"follow", "astray"}  # kb's own questions
    assert by[("router:both", "follow")].passed  # the rewrite is what is routed, as in the stage
    assert by[("router:both", "lists")].passed  # generated from `code`, routed there
    assert not by[("router:both", "astray")].passed
    assert report.diagnosis == {"follow": "ok", "astray": "router"}  # `lists` is code's: only routed
    await rt.close()
