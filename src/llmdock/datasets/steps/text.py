"""Text steps: Unicode and whitespace normalisation, length in the target model's tokens, language."""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from pydantic import Field

from llmdock.datasets.rows import Row, row_text
from llmdock.datasets.steps.base import Step, StepContext, StepParams
from llmdock.datasets.tokens import TokenCounter

_SPACES = re.compile(r"[^\S\n]+")  # runs of whitespace other than newlines
_BLANK_LINES = re.compile(r"\n{3,}")
_KEEP_CONTROL = frozenset("\n\t")


class NormalizeParams(StepParams):
    form: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFKC"
    collapse_spaces: bool = True


class Normalize(Step):
    """Unicode normal form (NFKC: compatibility characters such as full-width letters and ligatures folded),
    control and format characters removed (zero-width spaces, BOMs), runs of spaces collapsed, lines trimmed,
    at most one blank line in a row. A message left empty drops its row."""

    name = "normalize"
    Params = NormalizeParams
    params: NormalizeParams

    def clean(self, text: str) -> str:
        text = unicodedata.normalize(self.params.form, text).replace("\r\n", "\n")
        text = "".join(c for c in text if c in _KEEP_CONTROL or unicodedata.category(c)[0] != "C")
        if self.params.collapse_spaces:
            text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
            text = _BLANK_LINES.sub("\n\n", text)
        return text.strip()

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        changed = 0
        for row in rows:
            before = [m["content"] for m in row["messages"]]
            for m in row["messages"]:
                m["content"] = self.clean(m["content"])
            changed += before != [m["content"] for m in row["messages"]]
        ctx.extra["changed"] = changed
        return self.keep_if(
            rows, ctx, lambda r: None if all(m["content"] for m in r["messages"]) else "empty"
        )


class LengthParams(StepParams):
    min_tokens: int = Field(1, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    model: str = Field("", description="the configured model whose tokenizer counts (default: default_model)")


class Length(Step):
    """Rows whose messages hold fewer than ``min_tokens`` or more than ``max_tokens`` tokens of the target
    model's tokenizer (the contents' tokens; the chat template adds a few per message)."""

    name = "length"
    Params = LengthParams
    params: LengthParams

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        model = self.params.model or ctx.default_model
        counter = TokenCounter(ctx.model_path(model))
        lo, hi = self.params.min_tokens, self.params.max_tokens
        lengths: list[int] = []

        def why(row: Row) -> str | None:
            n = sum(counter.count(m["content"]) for m in row["messages"])
            lengths.append(n)
            if n < lo:
                return f"under {lo} tokens"
            return f"over {hi} tokens" if hi is not None and n > hi else None

        try:
            kept = self.keep_if(rows, ctx, why)
        finally:
            counter.close()
        ctx.extra.update(model=model, tokens=sum(lengths), max_seen=max(lengths, default=0))
        return kept


class LanguageParams(StepParams):
    keep: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    min_probability: float = Field(0.0, ge=0, le=1)
    sample_chars: int = Field(2000, ge=20)


class Language(Step):
    """Rows in a language outside ``keep`` (py3langid, 97 languages; its model ships in the package). A row
    identified with a probability under ``min_probability`` is dropped as ``unsure``."""

    name = "language"
    Params = LanguageParams
    params: LanguageParams

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        keep = set(self.params.keep)
        found: dict[str, int] = {}

        def why(row: Row) -> str | None:
            language, probability = identifier.classify(row_text(row)[: self.params.sample_chars])
            found[language] = found.get(language, 0) + 1
            if language not in keep:
                return f"language {language}"
            return "unsure" if probability < self.params.min_probability else None

        kept = self.keep_if(rows, ctx, why)
        ctx.extra["languages"] = found
        return kept
