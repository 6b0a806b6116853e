"""Exact and near-duplicate removal: the first of each group is kept.

Exact duplicates are rows whose text is the same after case-folding and collapsing whitespace. Near
duplicates are found with MinHash LSH (``datasketch``): each row's set of word ``shingle``-grams is hashed
into ``num_perm`` permutations, and LSH returns the earlier rows whose estimated Jaccard similarity is above
``threshold``; a row with such a neighbour is dropped. The estimate is checked against the exact Jaccard
of the two sets, so LSH's false positives never drop a row.
"""

from __future__ import annotations

import hashlib
import itertools
import re

from pydantic import Field

from llmdock.datasets.rows import Row, row_text
from llmdock.datasets.steps.base import Step, StepContext, StepParams

_WORD = re.compile(r"\w+")


class DedupParams(StepParams):
    near: bool = True
    threshold: float = Field(0.7, gt=0, le=1)
    shingle: int = Field(1, ge=1, le=5, description="words per shingle")
    num_perm: int = Field(128, ge=16, le=1024)
    seed: int = 1


def shingles(text: str, n: int) -> set[str]:
    words = _WORD.findall(text.casefold())
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


class Dedup(Step):
    name = "dedup"
    Params = DedupParams
    params: DedupParams

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        from datasketch import MinHash, MinHashLSH

        p = self.params
        seen: set[str] = set()
        lsh = MinHashLSH(threshold=p.threshold, num_perm=p.num_perm)
        sets: dict[str, set[str]] = {}
        pairs: list[list[int]] = []
        position = itertools.count()

        def why(row: Row) -> str | None:
            index = next(position)
            text = " ".join(row_text(row).casefold().split())
            key = hashlib.sha256(text.encode()).hexdigest()
            if key in seen:
                return "exact duplicate"
            seen.add(key)
            if not p.near:
                return None
            words = shingles(text, p.shingle)
            m = MinHash(num_perm=p.num_perm, seed=p.seed)
            m.update_batch([w.encode() for w in words])
            for other in lsh.query(m):
                if _jaccard(words, sets[other]) >= p.threshold:
                    pairs.append([int(other) + 1, index + 1])
                    return "near duplicate"
            lsh.insert(str(index), m)
            sets[str(index)] = words
            return None

        kept = self.keep_if(rows, ctx, why)
        ctx.extra["near_pairs"] = pairs[:20]  # (kept row, dropped row), 1-based, in the step's input
        return kept


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0
