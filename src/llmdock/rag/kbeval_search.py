"""The searches ``kb evaluate`` scores, no answer generated: the retriever's modes, the rewriter and the router.

- **Retriever** (``retriever:dense``, ``retriever:bm25``, ``retriever:hybrid``): each question's ranking
  against its source chunks, by ``ir_metrics`` (hit rate, recall, MRR, nDCG at k).
- **Rewriter** (``rewriter:MODEL``, when ``rag.rewrite_model`` is set): the follow-up questions (rows whose
  conversation has turns before the last question) rewritten as the ground stage would, then ranked in the
  stage's ``rag.mode``; the same questions' ``retriever:MODE`` results are the "without rewrite" figures.
- **Router** (``router:MODEL``, when the chat model names several knowledge bases): each question routed as
  the ground stage would; it passes when it goes to the knowledge base that generated it (the row's
  ``metadata.kb``, else the one evaluated).
"""

from __future__ import annotations

from collections.abc import Sequence

from llmdock.evaluate.case import CaseResult, Output, Score
from llmdock.evaluate.targets import Serving
from llmdock.pipeline.env import StageEnv
from llmdock.rag.ir_metrics import score_rankings
from llmdock.rag.retrieve import Mode, Retriever
from llmdock.rag.route import Rewriter, Router, earlier_turns
from llmdock.rag.testset_file import RagQuestion
from llmdock.store import Store

MODES: tuple[Mode, ...] = ("dense", "bm25", "hybrid")


async def ranked_results(
    target: str,
    retriever: Retriever,
    kb: str,
    asked: Sequence[tuple[RagQuestion, str]],
    ks: tuple[int, ...],
    mode: Mode,
) -> list[CaseResult]:
    """Each question's ranking for its query (``asked``: question, the text searched), scored against its
    source chunks; the case passes when one is in the top ``min(ks)``."""
    relevant = {q.case.id: [str(c) for c in q.source_chunks] for q, _ in asked}
    rankings: dict[str, list[str]] = {}
    shown: dict[str, str] = {}
    for q, query in asked:
        hits = await retriever.search(kb, query, k=max(ks), mode=mode)
        rankings[q.case.id] = [str(h.chunk_id) for h in hits]
        searched = "" if query == q.question else f"searched: {query}\n"
        shown[q.case.id] = searched + "\n".join(f"{h.chunk_id} {h.source}" for h in hits)
    per_query = score_rankings(rankings, relevant, ks)
    results = []
    for q, _ in asked:
        values = per_query[q.case.id]
        scores = {
            name: Score(v, v > 0 if not name.startswith("recall") else v >= 1) for name, v in values.items()
        }
        hit = values[f"hit@{min(ks)}"] > 0
        output = Output(text=shown[q.case.id], served={"mode": mode, "kb": kb})
        results.append(CaseResult(target, q.case.id, 0, output, scores, float(hit), hit))
    return results


async def retrieval_results(
    retriever: Retriever, kb: str, questions: Sequence[RagQuestion], ks: tuple[int, ...]
) -> list[CaseResult]:
    """Each mode's ranking of each question's chunks, scored against its source chunks."""
    asked = [(q, q.question) for q in questions if q.source_chunks]
    results: list[CaseResult] = []
    for mode in MODES:
        results += await ranked_results(f"retriever:{mode}", retriever, kb, asked, ks, mode)
    return results


def history(q: RagQuestion) -> list[tuple[str, str]]:
    """The turns before the question's last user turn (none for a single question)."""
    messages = q.case.messages or []
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    return earlier_turns(messages, last)


async def rewrites(env: StageEnv, model: str, questions: Sequence[RagQuestion]) -> dict[str, str]:
    """Each follow-up question (one with earlier turns) as the rewriter makes it stand alone."""
    rewriter = Rewriter(env, model)
    found = {}
    for q in questions:
        turns = history(q)
        if turns:
            found[q.case.id] = await rewriter.rewrite(turns, q.question) or q.question
    return found


async def rewriter_results(
    retriever: Retriever,
    kb: str,
    questions: Sequence[RagQuestion],
    rewritten: dict[str, str],
    ks: tuple[int, ...],
    mode: Mode,
    model: str,
) -> list[CaseResult]:
    """The follow-up questions ranked with their rewrites (``rewritten``: case id → standalone question)."""
    asked = [(q, rewritten[q.case.id]) for q in questions if q.source_chunks and q.case.id in rewritten]
    return await ranked_results(f"rewriter:{model}", retriever, kb, asked, ks, mode)


async def router_results(
    router: Router,
    names: Sequence[str],
    kb: str,
    questions: Sequence[RagQuestion],
    rewritten: dict[str, str],
    model: str,
) -> list[CaseResult]:
    """Each question with source chunks routed among ``names``: passes when it goes where it came from."""
    results = []
    for q in questions:
        if not q.source_chunks:
            continue
        expected = str(q.case.metadata.get("kb") or kb)
        routed = await router.route(names, rewritten.get(q.case.id, q.question))
        ok = routed.kb == expected
        shown = ", ".join(f"{n} {s:.3f}" for n, s in sorted(routed.scores.items(), key=lambda x: -x[1]))
        output = Output(text=f"{routed.kb} ({shown})", served={"kb": routed.kb, "expected_kb": expected})
        score = Score(float(ok), ok, f"routed to {routed.kb}, generated from {expected}")
        results.append(CaseResult(f"router:{model}", q.case.id, 0, output, {"routed": score}, float(ok), ok))
    return results


def routed_among(serving: Serving, model: str) -> list[str]:
    """The knowledge bases the chat model's questions are routed among (one: no router)."""
    cfg = serving.settings.all_models().get(model)
    return cfg.knowledge_bases() if cfg is not None else []


def own(questions: Sequence[RagQuestion], kb: str) -> list[RagQuestion]:
    """The questions of knowledge base ``kb``: rows generated from another one are only routed."""
    return [q for q in questions if str(q.case.metadata.get("kb") or kb) == kb]


def expected_searches(serving: Serving, kb: str, model: str, questions: Sequence[RagQuestion]) -> int:
    """How many results ``search_results`` gives."""
    asked = [q for q in own(questions, kb) if q.source_chunks]
    n = len(MODES) * len(asked)
    if serving.settings.rag.rewrite_model:
        n += sum(1 for q in asked if history(q))
    routed = sum(1 for q in questions if q.source_chunks)
    return n + (routed if len(routed_among(serving, model)) > 1 else 0)


async def search_results(
    serving: Serving, store: Store, kb: str, model: str, questions: Sequence[RagQuestion], ks: tuple[int, ...]
) -> list[CaseResult]:
    """The retriever's modes and the rewriter on ``kb``'s questions, and the router on every question, where
    the ground stage would use them."""
    rag = serving.settings.rag
    retriever = Retriever(serving.stage_env, store)
    mine = own(questions, kb)
    results = await retrieval_results(retriever, kb, mine, ks)
    rewritten: dict[str, str] = {}
    if rag.rewrite_model:
        rewritten = await rewrites(serving.stage_env, rag.rewrite_model, questions)
        results += await rewriter_results(retriever, kb, mine, rewritten, ks, rag.mode, rag.rewrite_model)
    names = routed_among(serving, model)
    if len(names) > 1:
        router = Router(retriever, rag.route_by)
        results += await router_results(router, names, kb, questions, rewritten, model)
    return results
