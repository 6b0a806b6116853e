"""RAG test sets and their scores (fake models): retrieval measures as trec_eval computes them, test-set files
checked row by row, generation that keeps only checked questions, and an evaluation stored as a run."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from llmdock.config import ModelConfig
from llmdock.errors import ConfigError
from llmdock.evaluate.case import Case, CaseResult, Check, Output, Score
from llmdock.evaluate.results import get_run, load_results
from llmdock.rag import bases
from llmdock.rag.index import load_rows
from llmdock.rag.ingest import Ingest
from llmdock.rag.ir_metrics import mean_scores, score_rankings
from llmdock.rag.judge_noise import merged, noise
from llmdock.rag.kbeval import JUDGED, Plan, evaluate_kb, grounded_pipeline
from llmdock.rag.metrics import claims, given_context
from llmdock.rag.testset import TestsetGenerator, grounded, why_empty
from llmdock.rag.testset_file import load_testset, row, write_testset
from llmdock.runtime import Runtime
from tests.conftest import fake_settings

DOCS = {
    "turbines.txt": "Wind turbines turn the kinetic energy of moving air into electricity. The blades drive a "
    "rotor, the rotor turns a shaft, and a generator in the nacelle converts that rotation into "
    "alternating current. Large turbines stand more than one hundred metres tall.",
    "bread.txt": "Sourdough bread rises because a starter of wild yeast and lactic acid bacteria ferments "
    "the dough. The bacteria make the bread sour, the yeast makes carbon dioxide, and the dough is "
    "left to rise for many hours before it is baked in a hot oven.",
    "tides.txt": "Tides are the rise and fall of the sea caused by the gravity of the Moon and the Sun. "
    "Most coasts see two high tides and two low tides every day, and the largest ranges, called "
    "spring tides, come when the Sun and the Moon are in line with the Earth.",
}
WRITER_REPLY = json.dumps(
    {
        "question": "What does the generator in the nacelle convert?",
        "answer": "the rotation into alternating current",
        "reason": "the text says so",
        "pass": True,
    }
)
MODELS = {
    "fake": ModelConfig(backend="fake"),
    "fake-embed": ModelConfig(backend="fake", task="embedding"),
    "writer": ModelConfig(backend="fake", reply=WRITER_REPLY),  # also a passing judge
    "judge": ModelConfig(backend="fake", reply='{"reason": "mostly", "score": 0.75}'),
    "fake-kb": ModelConfig(backend="fake", knowledge_base="kb"),
}


async def _runtime(tmp_path: Path) -> Runtime:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text + "\n")
    rt = Runtime(fake_settings(tmp_path, models=MODELS))
    assert rt.store is not None
    await Ingest(rt.stage_env, rt.store, bases.create(rt.store, "kb", "fake-embed")).run([docs])
    return rt


def test_retrieval_measures_are_trec_evals() -> None:
    rankings = {"a": ["x", "y", "y", "z"], "b": [], "c": ["q"]}
    relevant = {"a": ["y", "w"], "b": ["x"], "c": ["q"], "unjudged": []}
    scores = score_rankings(rankings, relevant, ks=(1, 10))
    assert set(scores) == {"a", "b", "c"}  # a query without relevant items is left out
    a = scores["a"]
    assert (a["hit@1"], a["hit@10"], a["recall@10"], a["mrr"]) == (0.0, 1.0, 0.5, 0.5)
    assert a["ndcg@10"] == pytest.approx((1 / 1.5849625) / (1 + 1 / 1.5849625))  # y at rank 2 of 2 relevant
    assert scores["b"] == dict.fromkeys(a, 0.0)  # an empty ranking scores 0, not "missing"
    assert scores["c"]["mrr"] == scores["c"]["ndcg@10"] == 1.0
    assert mean_scores(scores)["mrr"] == pytest.approx(0.5)


def test_a_bad_test_set_row_is_named_by_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    good = row("q1", "What turns?", "Blades", "ctx", {"kind": "simple", "source_chunks": [1]})
    cases = [
        ({**good, "metadata": {"kind": "simple"}}, "metadata.source_chunks: missing"),
        ({**good, "metadata": {"source_chunks": ["1"]}}, "metadata.source_chunks: must be a list"),
        ({**good, "metadata": {"kind": "odd", "source_chunks": []}}, "metadata.kind: 'odd' is not a kind"),
        ({k: v for k, v in good.items() if k != "expected"}, "expected: the reference answer is missing"),
        ({**good, "question": "x"}, "question: unknown field"),
    ]
    for bad, message in cases:
        write_testset(path, [good, {**bad, "id": "q2"}])
        with pytest.raises(ConfigError) as err:
            load_testset(path)
        assert err.value.one_line().startswith(f"{path}:2: {message}"), err.value.one_line()
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ConfigError) as err:
        load_testset(path)
    assert err.value.one_line().startswith(f"{path}:2: not JSON")
    write_testset(path, [good])
    assert load_testset(path)[0].source_chunks == (1,)


async def test_generation_keeps_checked_questions_and_counts_the_rest(tmp_path: Path) -> None:
    rt = await _runtime(tmp_path)
    assert rt.store is not None
    gen = TestsetGenerator(
        rt.stage_env, rt.store, "kb", "writer", "writer", seed=3, kinds=("simple",), retries=1
    )
    out = await gen.run(3)
    # the fake writer asks about the turbines of every chunk: only the turbine text holds the answer
    assert len(out.rows) == 1
    assert (out.candidates, out.generated) == (3, 1 + 2 * 2)  # each rejected one tried twice
    assert out.rejected == {"answer not in the text": 4}
    twice = await gen.run(1)  # the same question again is a duplicate
    assert (twice.rows, twice.rejected) == ([], {"duplicate": 6})
    assert why_empty(twice) == "6 generated from 3 chunks, none kept (duplicate: 6)"
    kept = out.rows[0]
    meta = kept["metadata"]
    assert (meta["synthetic"], meta["kind"], meta["generator"]) == (True, "simple", "writer")
    chunk_ids = {int(c) for c in load_rows(rt.store, bases.get(rt.store, "kb")).chunk_ids}
    assert set(meta["source_chunks"]) <= chunk_ids
    again = await TestsetGenerator(
        rt.stage_env, rt.store, "kb", "writer", "writer", seed=3, kinds=("simple",), retries=1
    ).run(3)
    assert again.rows == out.rows  # the same seed draws the same chunks
    judged_out = await TestsetGenerator(
        rt.stage_env, rt.store, "kb", "writer", "fake", kinds=("simple",)
    ).run(1)
    assert judged_out.rows == []
    assert judged_out.rejected == {"judged not answerable": 3, "answer not in the text": 6}
    budget = await TestsetGenerator(
        rt.stage_env, rt.store, "kb", "writer", "fake", kinds=("simple",), retries=0, max_chunks=1
    ).run(3)
    assert (budget.candidates, budget.generated) == (1, 1)  # --max-chunks 1: one chunk asked about, once
    await rt.close()


def test_an_answer_is_grounded_by_its_words_in_the_text() -> None:
    assert grounded("the rotation into alternating current", DOCS["turbines.txt"]) == 1.0
    assert grounded("Paris is in France", DOCS["turbines.txt"]) == 0.25  # "is" only ("the"/"a" are dropped)


def test_the_judged_context_is_what_the_ground_stage_added() -> None:
    case = Case(id="1", input="What turns?", context="given context")
    grounded_turn = [{"role": "user", "content": "[1] turbines.txt\nBlades turn.\n\nQuestion: What turns?"}]
    assert given_context(case, Output(messages=grounded_turn)).startswith("[1] turbines.txt")
    assert (
        given_context(case, Output(messages=[{"role": "user", "content": "What turns?"}])) == "given context"
    )
    assert given_context(case, Output()) == "given context"
    assert grounded_pipeline(["preprocess", "cache", "guard_in", "generate"]) == [
        "preprocess",
        "ground",
        "guard_in",
        "generate",
    ]


async def test_an_evaluation_scores_each_component_and_is_stored_as_a_run(tmp_path: Path) -> None:
    rt = await _runtime(tmp_path)
    assert rt.store is not None
    rows = load_rows(rt.store, bases.get(rt.store, "kb"))
    by_source = {Path(s).name: int(c) for s, c in zip(rows.sources, rows.chunk_ids, strict=True)}
    testset = tmp_path / "t.jsonl"
    write_testset(
        testset,
        [
            row(
                "q1",
                "sourdough starter wild yeast",
                "yeast and bacteria",
                "",
                {"source_chunks": [by_source["bread.txt"]]},
            ),
            row(
                "q2",
                "spring tides Moon Sun",
                "when they are in line",
                "",
                {"source_chunks": [by_source["tides.txt"]]},
            ),
            row("q3", "What is the capital of Peru?", "Lima", "", {"source_chunks": []}),
        ],
    )
    questions = load_testset(testset)
    plan = Plan("kb", "fake-kb", judge="judge", repeats=2)
    report = await evaluate_kb(rt, rt.store, rt.plugins.metrics, plan, testset, questions, "pytest")
    targets = {r.target for r in report.results}
    assert targets == {"retriever:dense", "retriever:bm25", "retriever:hybrid", "generator:fake-kb"}
    bm25 = {r.case_id: r for r in report.results if r.target == "retriever:bm25"}
    assert set(bm25) == {"q1", "q2"}  # q3 names no source: nothing to find
    assert bm25["q1"].scores["mrr"].value == 1.0
    assert bm25["q1"].scores["hit@4"].passed
    generated = [r for r in report.results if r.target == "generator:fake-kb"]
    assert len(generated) == 3 * 2
    assert not any(r.error for r in generated)
    assert {r.scores["faithfulness"].value for r in generated} == {0.75}
    assert report.diagnosis["q3"] == "knowledge base"
    assert report.diagnosis["q1"] == "ok"  # found by hybrid retrieval, judged 0.75
    stored = load_results(rt.store, report.run_id)
    assert len(stored) == len(report.results) == 2 * 3 + 3 * 2
    assert get_run(rt.store, report.run_id).status == "done"
    await rt.close()


def test_a_reference_answer_is_split_into_its_claims() -> None:
    assert claims("Use json.loads. It returns a dict!  ") == ["Use json.loads.", "It returns a dict!"]
    assert claims(" ... ") == []


async def test_context_recall_per_claim_is_the_share_of_claims_the_judge_finds(tmp_path: Path) -> None:
    models = {
        **MODELS,
        "yes": ModelConfig(backend="fake", reply='{"reason": "stated", "pass": true}'),
        "no": ModelConfig(backend="fake", reply='{"reason": "absent", "pass": false}'),
    }
    rt = Runtime(fake_settings(tmp_path, models=models))
    case = Case(
        id="1", input="What turns?", expected="The blades turn. A shaft turns too.", context="Blades."
    )
    factory = rt.plugins.metrics["context-recall-claims"]
    found = await factory(Check("context-recall-claims", {"model": "yes"}), rt.stage_env).score(
        case, Output()
    )
    assert (found.value, found.passed) == (1.0, True)
    assert found.reason.startswith(
        "2 of 2 claims of the reference are in the context (found: 'The blades turn.'"
    )
    missing = await factory(Check("context-recall-claims", {"model": "no"}), rt.stage_env).score(
        case, Output()
    )
    assert (missing.value, missing.passed) == (0.0, False)
    empty = await factory(Check("context-recall-claims", {"model": "yes"}), rt.stage_env).score(
        Case(id="2", input="?", expected=" - ", context="Blades."), Output()
    )
    assert (empty.value, empty.reason) == (0.0, "the reference answer states no claim to look for")
    await rt.close()


def test_the_judges_noise_is_how_much_its_verdicts_on_one_answer_differ() -> None:
    def judged(case_id: str, *values: float) -> list[CaseResult]:
        return [
            CaseResult("g", case_id, 0, Output(), {"faithfulness": Score(v, v >= 0.5)}, v, v >= 0.5)
            for v in values
        ]

    steady, split = judged("a", 1.0, 1.0, 1.0), judged("b", 1.0, 0.0, 1.0)
    found = noise([steady, split])["faithfulness"]
    assert found.answers == 2
    assert found.sd.mean == pytest.approx((0 + statistics.pstdev([1, 0, 1])) / 2)
    assert found.disagree.mean == 0.5  # one answer of two had a split verdict
    one = merged(split, {"faithfulness": 0.5})
    assert one.scores["faithfulness"].value == pytest.approx(2 / 3)
    assert one.scores["faithfulness"].reason == "judged 3x: 1.00, 0.00, 1.00"
    assert one.passed


async def test_an_unanswerable_question_is_scored_never_nan(tmp_path: Path) -> None:
    rt = await _runtime(tmp_path)
    assert rt.store is not None
    testset = tmp_path / "t.jsonl"
    write_testset(testset, [row("peru", "What is the capital of Peru?", "Lima.", "", {"source_chunks": []})])
    plan = Plan("kb", "fake-kb", judge="judge", judge_repeats=2)
    report = await evaluate_kb(rt, rt.store, rt.plugins.metrics, plan, testset, load_testset(testset))
    [answer] = report.results  # no source chunk: nothing for the retriever, the answer still judged
    assert not answer.error
    assert set(answer.scores) == set(JUDGED)
    assert all(math.isfinite(s.value) for s in answer.scores.values())
    assert report.diagnosis == {"peru": "knowledge base"}
    assert report.judge_noise["faithfulness"].sd.mean == 0.0  # the fake judge says the same each time
    await rt.close()
