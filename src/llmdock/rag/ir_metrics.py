"""Retrieval scores of ranked results against relevance judgements: hit rate, recall, MRR and nDCG at k.

Computed by ir-measures over pytrec-eval-terrier, i.e. trec_eval's own code, not by hand: ``Success@k``
(hit: a relevant item in the top k), ``R@k`` (recall: the share of the relevant items in the top k), ``RR``
(reciprocal rank of the first relevant item, cut at the ranking's depth: its mean is MRR) and ``nDCG@k``
(binary gains). A query whose ranking is empty scores 0 on each (trec_eval leaves it out; here it counts).

Rankings are given in rank order; trec_eval sorts by score and breaks ties by document id, so the scores
handed to it are 1/rank, strictly decreasing, and the order given is the order scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

DEFAULT_KS = (5, 10)


def measure_names(ks: Sequence[int] = DEFAULT_KS) -> list[str]:
    """The labels scores come back under, in a stable order: ``hit@5, recall@5, …, mrr, ndcg@10``."""
    names = [f"{m}@{k}" for k in ks for m in ("hit", "recall")]
    return [*names, "mrr", f"ndcg@{max(ks)}"]


def _measures(ks: Sequence[int]) -> dict[Any, str]:
    from ir_measures import RR, R, Success, nDCG

    found: dict[Any, str] = {}
    for k in ks:
        found[Success @ k] = f"hit@{k}"
        found[R @ k] = f"recall@{k}"
    found[RR] = "mrr"
    found[nDCG @ max(ks)] = f"ndcg@{max(ks)}"
    return found


def score_rankings(
    rankings: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Sequence[str]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Per query: each measure's value. ``rankings``: query id → item ids, best first (duplicates after the
    first ignored); ``relevant``: query id → the relevant item ids (a query without any is left out)."""
    import ir_measures

    if not ks or min(ks) < 1:
        raise ValueError("k must be at least 1")
    measures = _measures(ks)
    qrels = {q: {str(d): 1 for d in docs} for q, docs in relevant.items() if docs}
    run: dict[str, dict[str, float]] = {}
    for q in qrels:
        ranked: dict[str, float] = {}
        for item in rankings.get(q, ()):
            ranked.setdefault(str(item), 1.0 / (len(ranked) + 1))
        run[q] = ranked
    scores = {q: dict.fromkeys(measures.values(), 0.0) for q in qrels}
    scored_run = {q: r for q, r in run.items() if r}
    if scored_run:
        for metric in ir_measures.iter_calc(list(measures), qrels, scored_run):
            scores[metric.query_id][measures[metric.measure]] = float(metric.value)
    return scores


def mean_scores(per_query: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each measure's mean over the queries (MRR is the mean of ``mrr``)."""
    if not per_query:
        return {}
    names = next(iter(per_query.values())).keys()
    return {n: fmean(v[n] for v in per_query.values()) for n in names}
