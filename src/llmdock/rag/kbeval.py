"""``llmdock kb evaluate``: a RAG test set scored component by component, stored as an evaluation run.

- **Retriever**, for each mode side by side (``retriever:dense``, ``retriever:bm25``, ``retriever:hybrid``):
  each question's ranking against its source chunks, scored by ``ir_metrics`` (hit rate, recall, MRR, nDCG
  at k; k = the ground stage's ``rag.top_k`` and 10). No model is asked.
- **Generator** (``generator:MODEL``): each question asked through the served pipeline with the ``ground``
  stage (the model that names the knowledge base), ``repeats`` times, its answer scored by the RAG judge
  metrics (``faithfulness``, ``answer-correctness``, ``context-precision``, ``context-recall``, from
  ``llmdock.rag.metrics``) through evaluate's own ``score_case``.
- **Knowledge base**: questions whose row names no source chunk (written by hand: the base is not expected
  to hold the answer), and source chunks no longer in it (re-ingested since the test set was made).

Every result is an evaluation result of one run (``llmdock eval show / report / compare`` read it as any
run), each component a target. ``diagnose`` says per question which component failed it and which to fix
first: a question the ground stage's retriever missed (no source chunk in its top k) is the retriever's; one
it found but answered wrongly or unfaithfully is the generator's.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import select

from llmdock.errors import ConfigError
from llmdock.evaluate.case import CaseResult, Check, Metric, MetricFactory, Output, Score
from llmdock.evaluate.results import create_run, finish_run, save_result
from llmdock.evaluate.runner import score_case
from llmdock.evaluate.suite import TargetSpec
from llmdock.evaluate.targets import LocalTarget, Serving
from llmdock.pipeline.context import new_trace_id
from llmdock.rag import bases
from llmdock.rag.ir_metrics import score_rankings
from llmdock.rag.retrieve import Mode, Retriever
from llmdock.rag.testset_file import RagQuestion
from llmdock.store import Store
from llmdock.store.kb_rows import KbChunkRow

MODES: tuple[Mode, ...] = ("dense", "bm25", "hybrid")
JUDGED = ("faithfulness", "answer-correctness", "context-precision", "context-recall")
PASS_AT = 0.5
Component = Literal["ok", "retriever", "generator", "knowledge base"]


@dataclass
class Plan:
    kb: str
    model: str  # the chat model whose settings name the knowledge base
    judge: str = ""  # the judge model ("" = llm-rubric's default)
    repeats: int = 1
    generate: bool = True
    judge_cache: bool = True
    concurrency: int = 4
    max_tokens: int = 256


@dataclass
class Report:
    run_id: str
    results: list[CaseResult]
    diagnosis: dict[str, Component]  # case id -> the component that failed it
    stale_chunks: int = 0  # source chunks no longer in the knowledge base
    ks: tuple[int, ...] = ()
    modes: dict[str, str] = field(default_factory=dict)  # target label -> what it is

    def fix_first(self) -> str:
        failed = Counter(c for c in self.diagnosis.values() if c != "ok")
        return failed.most_common(1)[0][0] if failed else "nothing"


def kb_model(serving: Serving, kb: str, model: str | None) -> str:
    """The chat model to ask: ``model`` if it names ``kb``, else the one configured model that does."""
    named = [m for m, cfg in serving.settings.all_models().items() if cfg.knowledge_base == kb]
    if model is not None:
        if model not in named:
            raise ConfigError(
                f"model {model!r} does not name knowledge base {kb!r} (set knowledge_base: {kb} on it)",
                where="--model",
            )
        return model
    if not named:
        raise ConfigError(
            f"no model names knowledge base {kb!r}: set knowledge_base: {kb} on a chat model, or give "
            "--retrieval-only",
            where="--model",
        )
    return named[0]


def grounded_pipeline(names: Sequence[str]) -> list[str]:
    """The configured stages without the cache, with ``ground`` before the input guards if it is missing."""
    stages = [s for s in names if s != "cache"]
    if "ground" not in stages:
        at = next((i for i, s in enumerate(stages) if s in ("guard_in", "generate")), len(stages))
        stages.insert(at, "ground")
    return stages


def fingerprint(path: Path, plan: Plan) -> str:
    config = orjson.dumps(plan.__dict__, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(path.read_bytes() + b"\0" + config).hexdigest()


def stale(store: Store, kb_id: int, questions: Sequence[RagQuestion]) -> set[int]:
    """The questions' source chunk ids that the knowledge base no longer holds."""
    wanted = {c for q in questions for c in q.source_chunks}
    with store.session() as s:
        present = set(
            s.scalars(select(KbChunkRow.id).where(KbChunkRow.kb_id == kb_id, KbChunkRow.id.in_(wanted)))
        )
    return wanted - present


async def retrieval_results(
    retriever: Retriever, kb: str, questions: Sequence[RagQuestion], ks: tuple[int, ...]
) -> list[CaseResult]:
    """Each mode's ranking of each question's chunks, scored against its source chunks."""
    asked = [q for q in questions if q.source_chunks]
    relevant = {q.case.id: [str(c) for c in q.source_chunks] for q in asked}
    results: list[CaseResult] = []
    for mode in MODES:
        rankings: dict[str, list[str]] = {}
        shown: dict[str, str] = {}
        for q in asked:
            hits = await retriever.search(kb, q.question, k=max(ks), mode=mode)
            rankings[q.case.id] = [str(h.chunk_id) for h in hits]
            shown[q.case.id] = "\n".join(f"{h.chunk_id} {h.source}" for h in hits)
        per_query = score_rankings(rankings, relevant, ks)
        for q in asked:
            values = per_query[q.case.id]
            scores = {
                name: Score(v, v > 0 if not name.startswith("recall") else v >= 1)
                for name, v in values.items()
            }
            hit = values[f"hit@{min(ks)}"] > 0
            output = Output(text=shown[q.case.id], served={"mode": mode, "kb": kb})
            results.append(CaseResult(f"retriever:{mode}", q.case.id, 0, output, scores, float(hit), hit))
    return results


def judge_metrics(
    factories: dict[str, MetricFactory], plan: Plan, serving: Serving
) -> list[tuple[Check, Metric]]:
    value: dict[str, Any] = {"cache": plan.judge_cache}
    if plan.judge:
        value["model"] = plan.judge
    built = []
    for name in JUDGED:
        check = Check(name, dict(value), PASS_AT)
        built.append((check, factories[name](check, serving.stage_env)))
    return built


async def generation_results(
    serving: Serving,
    factories: dict[str, MetricFactory],
    plan: Plan,
    questions: Sequence[RagQuestion],
    save: Callable[[RagQuestion, CaseResult], None],
) -> list[CaseResult]:
    """Each question asked through the pipeline with the ground stage, ``repeats`` times, and judged."""
    spec = TargetSpec(
        name=f"generator:{plan.model}",
        model=plan.model,
        pipeline=grounded_pipeline(serving.settings.pipeline),
    )
    target = LocalTarget(spec, serving)
    metrics = judge_metrics(factories, plan, serving)
    gate = asyncio.Semaphore(plan.concurrency)
    results: list[CaseResult] = []

    async def one(q: RagQuestion, repeat: int) -> None:
        async with gate:
            output = await target.answer(q.case, repeat, plan.max_tokens)
            result = await score_case(spec.label, q.case, repeat, output, metrics, None)
            await asyncio.to_thread(save, q, result)
            results.append(result)

    await asyncio.gather(*(one(q, r) for r in range(plan.repeats) for q in questions))
    return results


def diagnose(
    questions: Sequence[RagQuestion],
    results: Sequence[CaseResult],
    mode: str,
    top_k: int,
    stale_ids: set[int],
) -> dict[str, Component]:
    """Per question, the component that failed it (``ok`` when none did); repeats are averaged."""
    hit = {
        r.case_id: r.scores[f"hit@{top_k}"].value > 0
        for r in results
        if r.target == f"retriever:{mode}" and f"hit@{top_k}" in r.scores
    }
    judged: dict[str, list[float]] = {}
    for r in results:
        if r.target.startswith("generator:") and not r.error:
            keys = ("answer-correctness", "faithfulness")
            judged.setdefault(r.case_id, []).append(min(r.scores[k].value for k in keys if k in r.scores))
    found: dict[str, Component] = {}
    for q in questions:
        qid = q.case.id
        if not q.source_chunks or set(q.source_chunks) <= stale_ids:
            found[qid] = "knowledge base"
        elif not hit.get(qid, False):
            found[qid] = "retriever"
        elif qid in judged and sum(judged[qid]) / len(judged[qid]) < PASS_AT:
            found[qid] = "generator"
        else:
            found[qid] = "ok"
    return found


async def evaluate_kb(
    serving: Serving,
    store: Store,
    factories: dict[str, MetricFactory],
    plan: Plan,
    path: Path,
    questions: Sequence[RagQuestion],
    by: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Score every component on the test set and store it all as one evaluation run."""
    rag = serving.settings.rag
    ks = tuple(sorted({rag.top_k, 10}))
    kb = bases.get(store, plan.kb)
    stale_ids = await asyncio.to_thread(stale, store, kb.id, questions)
    run_id = new_trace_id()
    n_retrieval = len(MODES) * sum(1 for q in questions if q.source_chunks)
    n_expected = n_retrieval + (len(questions) * plan.repeats if plan.generate else 0)
    config = {"kind": "kb evaluate", **plan.__dict__, "ks": list(ks), "mode": rag.mode, "top_k": rag.top_k}
    create_run(store, run_id, f"kb {plan.kb}", str(path), fingerprint(path, plan), config, n_expected, by)
    by_id = {q.case.id: q for q in questions}
    done = 0

    def save(q: RagQuestion, result: CaseResult) -> None:
        nonlocal done
        save_result(store, run_id, q.case, result)
        done += 1
        if progress is not None:
            progress(done, n_expected)

    try:
        results = await retrieval_results(Retriever(serving.stage_env, store), plan.kb, questions, ks)
        for r in results:
            save(by_id[r.case_id], r)
        if plan.generate:
            results += await generation_results(serving, factories, plan, questions, save)
    except BaseException:
        finish_run(store, run_id, "interrupted")
        raise
    finish_run(store, run_id, "done")
    diagnosis = diagnose(questions, results, rag.mode, rag.top_k, stale_ids)
    labels = {f"retriever:{m}": f"retriever, {m}" for m in MODES}
    if plan.generate:
        labels[f"generator:{plan.model}"] = f"generator (ground stage: {rag.mode}, top {rag.top_k})"
    return Report(run_id, results, diagnosis, len(stale_ids), ks, labels)
