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
from llmdock.evaluate.case import CaseResult, Check, Metric, MetricFactory
from llmdock.evaluate.local_target import LocalTarget
from llmdock.evaluate.results import create_run, finish_run, save_result
from llmdock.evaluate.runner import score_case
from llmdock.evaluate.suite import TargetSpec
from llmdock.evaluate.targets import Serving
from llmdock.pipeline.context import new_trace_id
from llmdock.rag import bases
from llmdock.rag.judge_noise import Noise, merged, noise
from llmdock.rag.kbeval_search import MODES, expected_searches, own, routed_among, search_results
from llmdock.rag.testset_file import RagQuestion
from llmdock.store import Store
from llmdock.store.kb_rows import KbChunkRow

JUDGED = (
    "faithfulness",
    "answer-correctness",
    "context-precision",
    "context-recall",
    "context-recall-claims",
)
PASS_AT = 0.5
Component = Literal["ok", "router", "rewriter", "retriever", "generator", "knowledge base"]


@dataclass
class Plan:
    kb: str
    model: str  # the chat model whose settings name the knowledge base
    judge: str = ""  # the judge model ("" = llm-rubric's default)
    repeats: int = 1
    generate: bool = True
    judge_cache: bool = True
    judge_repeats: int = 1  # judgements of each answer (more than one: the judge cache is off)
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
    mode: str = "hybrid"  # the ground stage's retrieval mode (the rewriter's "without" figures)
    judge_noise: dict[str, Noise] = field(default_factory=dict)  # by metric, with --judge-repeats

    def fix_first(self) -> str:
        failed = Counter(c for c in self.diagnosis.values() if c != "ok")
        return failed.most_common(1)[0][0] if failed else "nothing"


def kb_model(serving: Serving, kb: str, model: str | None) -> str:
    """The chat model to ask: ``model`` if it names ``kb``, else the one configured model that does."""
    named = [m for m, cfg in serving.settings.all_models().items() if kb in cfg.knowledge_bases()]
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


def judge_metrics(
    factories: dict[str, MetricFactory], plan: Plan, serving: Serving
) -> list[tuple[Check, Metric]]:
    value: dict[str, Any] = {"cache": plan.judge_cache and plan.judge_repeats == 1}
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
) -> tuple[list[CaseResult], list[list[CaseResult]]]:
    """Each question asked through the pipeline with the ground stage, ``repeats`` times, and judged
    ``judge_repeats`` times; the merged results, and each answer's judgements."""
    spec = TargetSpec(
        name=f"generator:{plan.model}",
        model=plan.model,
        pipeline=grounded_pipeline(serving.settings.pipeline),
    )
    target = LocalTarget(spec, serving)
    metrics = judge_metrics(factories, plan, serving)
    gate = asyncio.Semaphore(plan.concurrency)
    thresholds = {c.label: c.threshold if c.threshold is not None else PASS_AT for c, _ in metrics}
    results: list[CaseResult] = []
    judgements: list[list[CaseResult]] = []

    async def one(q: RagQuestion, repeat: int) -> None:
        async with gate:
            output = await target.answer(q.case, repeat, plan.max_tokens)
            judged = [
                await score_case(spec.label, q.case, repeat, output, metrics, None)
                for _ in range(plan.judge_repeats)
            ]
            result = merged(judged, thresholds)
            await asyncio.to_thread(save, q, result)
            results.append(result)
            judgements.append(judged)

    await asyncio.gather(*(one(q, r) for r in range(plan.repeats) for q in questions))
    return results, judgements


def diagnose(
    questions: Sequence[RagQuestion],
    results: Sequence[CaseResult],
    mode: str,
    top_k: int,
    stale_ids: set[int],
) -> dict[str, Component]:
    """Per question, the component that failed it (``ok`` when none did); repeats are averaged."""

    def hits(prefix: str) -> dict[str, bool]:
        key = f"hit@{top_k}"
        return {r.case_id: r.scores[key].value > 0 for r in results if r.target.startswith(prefix)}

    hit, rewritten_hit = hits(f"retriever:{mode}"), hits("rewriter:")
    routed = {r.case_id: r.passed for r in results if r.target.startswith("router:")}
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
        elif not routed.get(qid, True):
            found[qid] = "router"  # sent to another knowledge base
        elif not rewritten_hit.get(qid, hit.get(qid, False)):
            found[qid] = "rewriter" if hit.get(qid, False) else "retriever"  # the rewrite lost what it found
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
    *,
    label: str = "",
) -> Report:
    """Score every component on the test set and store it all as one evaluation run."""
    rag = serving.settings.rag
    ks = tuple(sorted({rag.top_k, 10}))
    kb = bases.get(store, plan.kb)
    stale_ids = await asyncio.to_thread(stale, store, kb.id, own(questions, plan.kb))
    run_id = new_trace_id()
    mine = own(questions, plan.kb)  # rows generated from other knowledge bases are only routed
    n_searches = expected_searches(serving, plan.kb, plan.model, questions)
    n_expected = n_searches + (len(mine) * plan.repeats if plan.generate else 0)
    config = {"kind": "kb evaluate", **plan.__dict__, "ks": list(ks), "mode": rag.mode, "top_k": rag.top_k}
    config |= {"rewrite_model": rag.rewrite_model, "routed_among": routed_among(serving, plan.model)}
    fp = fingerprint(path, plan)
    create_run(store, run_id, f"kb {plan.kb}", label or str(path), fp, config, n_expected, by)
    by_id = {q.case.id: q for q in questions}
    done = 0

    def save(q: RagQuestion, result: CaseResult) -> None:
        nonlocal done
        save_result(store, run_id, q.case, result)
        done += 1
        if progress is not None:
            progress(done, n_expected)

    judgements: list[list[CaseResult]] = []
    try:
        results = await search_results(serving, store, plan.kb, plan.model, questions, ks)
        for r in results:
            save(by_id[r.case_id], r)
        if plan.generate:
            generated, judgements = await generation_results(serving, factories, plan, mine, save)
            results += generated
    except BaseException:
        finish_run(store, run_id, "interrupted")
        raise
    finish_run(store, run_id, "done")
    diagnosis = diagnose(mine, results, rag.mode, rag.top_k, stale_ids)
    labels = {f"retriever:{m}": f"retriever, {m}" for m in MODES}
    if rag.rewrite_model:
        labels[f"rewriter:{rag.rewrite_model}"] = f"rewriter {rag.rewrite_model}, then {rag.mode} retrieval"
    if len(routed_among(serving, plan.model)) > 1:
        labels[f"router:{plan.model}"] = f"router among {', '.join(routed_among(serving, plan.model))}"
    if plan.generate:
        labels[f"generator:{plan.model}"] = f"generator (ground stage: {rag.mode}, top {rag.top_k})"
    report = Report(run_id, results, diagnosis, len(stale_ids), ks, labels, rag.mode)
    report.judge_noise = noise(judgements)
    return report
