"""Privacy steps: PII anonymisation with the privacy module's Presidio engine, and k-anonymity over named
quasi-identifier columns.

k-anonymity: rows that share the values of every quasi-identifier form a class; the dataset is k-anonymous
when every class holds at least k rows. Below the bound, ``suppress`` drops the rows of the small classes;
``generalise`` first coarsens the columns one level at a time, all rows alike (numbers into ranges that double
in width, text losing its last character to ``*``: a postcode ``75001`` → ``7500*`` → ``750**``), taking the
level that leaves fewest rows in small classes, until k holds or ``max_level``; what is still below is
suppressed. The report gives k before and after, the levels used and the rows suppressed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from pydantic import Field

from llmdock.config import DEFAULT_PII_ENTITIES
from llmdock.datasets.rows import Row
from llmdock.datasets.steps.base import Step, StepContext, StepParams


class PiiParams(StepParams):
    mode: Literal["mask", "pseudonymize"] = "mask"
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_PII_ENTITIES))
    ner: bool = False
    columns: list[str] = Field(default_factory=list, description="meta columns to redact too")


class Pii(Step):
    """PII in every message (and the named meta columns) replaced by a mask (``<EMAIL_ADDRESS>``) or a keyed
    pseudonym (``<EMAIL_ADDRESS_3f2a9c1b>``, the privacy module's HMAC under the configured pseudonym key: the
    same value gives the same token across rows, so joins and counts survive)."""

    name = "pii"
    Params = PiiParams
    params: PiiParams

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        from llmdock.privacy.pii_engine import shared_engine

        engine = shared_engine(tuple(self.params.entities), ner=self.params.ner)
        key = ctx.pseudonym_key() if self.params.mode == "pseudonymize" else None
        changed = 0
        for row in rows:
            cells = [c for c in self.params.columns if isinstance(row["meta"].get(c), str)]
            texts = [m["content"] for m in row["messages"]] + [row["meta"][c] for c in cells]
            redacted = engine.redact_many(texts, self.params.mode, key)
            changed += redacted != texts
            for m, text in zip(row["messages"], redacted, strict=False):
                m["content"] = text
            row["meta"].update(zip(cells, redacted[len(row["messages"]) :], strict=True))
            ctx.advance(1)
        ctx.report.kept = len(rows)
        ctx.extra["rows_changed"] = changed
        return rows


class KAnonymityParams(StepParams):
    columns: list[str] = Field(min_length=1, description="the quasi-identifiers, as meta columns")
    k: int = Field(2, ge=2)
    action: Literal["suppress", "generalise", "report"] = "generalise"
    max_level: int = Field(4, ge=1, le=16)


def k_of(rows: list[Row], columns: list[str]) -> tuple[int, Counter[tuple[Any, ...]]]:
    """The smallest class size over ``columns`` (0 for no rows) and every class's size."""
    classes = Counter(tuple(r["meta"].get(c) for c in columns) for r in rows)
    return min(classes.values(), default=0), classes


def generalised(value: Any, level: int) -> Any:
    if level == 0 or value is None:
        return value
    if isinstance(value, bool):
        return "*"
    if isinstance(value, int | float):
        width = 5 * 2 ** (level - 1)
        lo = int(value // width * width)
        return f"{lo}-{lo + width - 1}"
    text = str(value)
    cut = max(len(text) - level, 0)
    return text[:cut] + "*" * (len(text) - cut)


class KAnonymity(Step):
    name = "kanon"
    Params = KAnonymityParams
    params: KAnonymityParams

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        p = self.params
        missing = [c for c in p.columns if not any(c in r["meta"] for r in rows)]
        if missing and rows:
            from llmdock.errors import InvalidRequest

            raise InvalidRequest(f"no row has the column(s) {', '.join(missing)}", where="kanon.columns")
        k_before, classes = k_of(rows, p.columns)
        ctx.extra.update(k_before=k_before, below_k=sum(n for n in classes.values() if n < p.k))
        levels = dict.fromkeys(p.columns, 0)
        if p.action == "generalise":
            levels = self._levels(rows, levels)
            for r in rows:
                for c, level in levels.items():
                    if c in r["meta"]:
                        r["meta"][c] = generalised(r["meta"][c], level)
        if p.action != "report":
            _, classes = k_of(rows, p.columns)
            rows = self.keep_if(rows, ctx, lambda r: self._small(r, classes))
        ctx.report.kept = len(rows)
        ctx.extra.update(k_after=k_of(rows, p.columns)[0], levels=levels)
        return rows

    def _small(self, row: Row, classes: Counter[tuple[Any, ...]]) -> str | None:
        size = classes[tuple(row["meta"].get(c) for c in self.params.columns)]
        return f"in a class below k={self.params.k}" if size < self.params.k else None

    def _levels(self, rows: list[Row], levels: dict[str, int]) -> dict[str, int]:
        """Greedy full-domain generalisation: raise the column whose next level leaves fewest rows below k."""
        p = self.params

        def below(trial: dict[str, int]) -> int:
            sizes = Counter(tuple(generalised(r["meta"].get(c), trial[c]) for c in p.columns) for r in rows)
            return sum(n for n in sizes.values() if n < p.k)

        while below(levels) and any(v < p.max_level for v in levels.values()):
            options = [levels | {c: levels[c] + 1} for c in p.columns if levels[c] < p.max_level]
            levels = min(options, key=below)
        return levels
