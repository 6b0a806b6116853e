"""Deterministic train/validation/test splits, and templated augmentation marked as synthetic.

A split orders the rows by the sha256 of (seed, row) and cuts that order at the fractions: the same rows and
seed always give the same split, whatever order the rows came in, and the counts are exact (rounded down for
validation and test; train takes the rest). Each row's ``meta.split`` says where it went.

Augmentation adds, for each row (only the train split's when the rows are split, so no variant of a test row
leaks into training), one copy per template with the first user message rewritten by the template
(``{text}`` stands for it). Copies are marked ``meta.synthetic = true`` with the template's index and the
source row's digest, so they can be filtered or weighted later.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from pydantic import Field, model_validator

from llmdock.datasets.formats import canonical_line
from llmdock.datasets.rows import Row
from llmdock.datasets.steps.base import Step, StepContext, StepParams

SPLITS = ("train", "validation", "test")


class SplitParams(StepParams):
    train: float = Field(0.8, ge=0, le=1)
    validation: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    seed: int = 0

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitParams:
        if abs(self.train + self.validation + self.test - 1) > 1e-9:
            raise ValueError("train + validation + test must be 1")
        return self


def row_digest(row: Row, salt: str = "") -> str:
    return hashlib.sha256(salt.encode() + canonical_line(row)).hexdigest()


class Split(Step):
    name = "split"
    Params = SplitParams
    params: SplitParams

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        p = self.params
        for r in rows:
            r["meta"].pop("split", None)  # a re-split ignores the previous one
        order = sorted(range(len(rows)), key=lambda i: row_digest(rows[i], f"{p.seed}\0"))
        n_val, n_test = int(len(rows) * p.validation), int(len(rows) * p.test)
        names = ["validation"] * n_val + ["test"] * n_test
        names += ["train"] * (len(rows) - len(names))
        for i, name in zip(order, names, strict=True):
            rows[i]["meta"]["split"] = name
        ctx.report.kept = len(rows)
        ctx.extra["sizes"] = {s: names.count(s) for s in SPLITS}
        return rows


class AugmentParams(StepParams):
    templates: list[str] = Field(min_length=1, description="each with {text}: the first user message")
    split: str = Field("train", description="only rows of this split, when the rows are split")

    @model_validator(mode="after")
    def _placeholder(self) -> AugmentParams:
        for i, t in enumerate(self.templates):
            if "{text}" not in t:
                raise ValueError(f"templates[{i}] has no {{text}}")
        return self


class Augment(Step):
    name = "augment"
    Params = AugmentParams
    params: AugmentParams

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        split_rows = any("split" in r["meta"] for r in rows)
        added: list[Row] = []
        for row in rows:
            ctx.advance(1)
            if row["meta"].get("synthetic") or (split_rows and row["meta"].get("split") != self.params.split):
                continue
            source = row_digest(row)
            for i, template in enumerate(self.params.templates):
                added.append(_variant(row, template, {"template": i, "source": source}))
        ctx.report.kept = len(rows) + len(added)
        ctx.extra["added"] = len(added)
        return rows + added


def _variant(row: Row, template: str, mark: dict[str, Any]) -> Row:
    out = copy.deepcopy(row)
    for m in out["messages"]:
        if m["role"] == "user":
            m["content"] = template.replace("{text}", m["content"])
            break
    out["meta"]["synthetic"] = True
    out["meta"]["augmented"] = mark
    return out
