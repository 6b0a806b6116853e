"""Paraphrases by a model: for each train row (all rows when unsplit), the first user message rewritten by a
configured model through the served pipeline (so it is traced like any request), added as a new row marked
``meta.synthetic = true`` with ``meta.augmented = {kind: paraphrase, model, source}``.

A paraphrase that comes back empty, identical to the original (case and spaces folded), longer than
``max_ratio`` times the original or sharing too few words with it (``min_overlap``, Jaccard over word sets:
a small model often answers the question instead of rewriting it) is not added; the report counts each reason
under ``rejected``.
"""

from __future__ import annotations

import copy

from pydantic import Field

from llmdock.datasets.rows import Row
from llmdock.datasets.steps.base import Step, StepContext, StepParams
from llmdock.datasets.steps.split import row_digest
from llmdock.errors import InvalidRequest

PROMPT = (
    "Rewrite the following question in different words. Reply with the rewritten question only.\n\n{text}"
)


class ParaphraseParams(StepParams):
    model: str = Field("", description="the configured model that paraphrases (default: default_model)")
    prompt: str = PROMPT
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(96, ge=1)
    seed: int = 0
    split: str = "train"
    max_ratio: float = Field(3.0, gt=1)
    min_overlap: float = Field(0.3, ge=0, le=1, description="Jaccard similarity of the word sets, at least")


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


class Paraphrase(Step):
    name = "paraphrase"
    Params = ParaphraseParams
    params: ParaphraseParams

    def _candidate(self, original: str, answer: str) -> tuple[str | None, str]:
        text = answer.strip().strip('"').strip()
        if not text:
            return None, "empty"
        if _fold(text) == _fold(original):
            return None, "same as the original"
        if len(text) > self.params.max_ratio * len(original):
            return None, "too long"
        a, b = set(_fold(text).split()), set(_fold(original).split())
        if len(a & b) < self.params.min_overlap * len(a | b):
            return None, "off topic"
        return text, ""

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        p = self.params
        if ctx.ask is None:
            raise InvalidRequest("no model can be asked here", where="paraphrase")
        model = p.model or ctx.default_model
        split_rows = any("split" in r["meta"] for r in rows)
        added: list[Row] = []
        rejected: dict[str, int] = {}
        sampling = {"temperature": p.temperature, "max_tokens": p.max_tokens, "seed": p.seed}
        for row in rows:
            ctx.advance(1)
            if row["meta"].get("synthetic") or (split_rows and row["meta"].get("split") != p.split):
                continue
            user = next((m for m in row["messages"] if m["role"] == "user"), None)
            if user is None:
                continue
            answer = ctx.ask(
                model, [{"role": "user", "content": p.prompt.replace("{text}", user["content"])}], sampling
            )
            text, why = self._candidate(user["content"], answer)
            if text is None:
                rejected[why] = rejected.get(why, 0) + 1
                continue
            variant = copy.deepcopy(row)
            next(m for m in variant["messages"] if m["role"] == "user")["content"] = text
            variant["meta"]["synthetic"] = True
            variant["meta"]["augmented"] = {"kind": "paraphrase", "model": model, "source": row_digest(row)}
            added.append(variant)
        ctx.extra.update(model=model, added=len(added), rejected=rejected)
        return rows + added
