"""Token-aware chunking with overlap: semantic-text-splitter measuring with the embedding model's tokenizer.

Chunks are cut at the largest semantic unit that fits (sections, paragraphs, sentences, then words) and
measured in the embedding model's own tokens, so none is truncated by its window. Every chunk keeps the
heading path of its section; what is embedded (and hashed) is the heading path followed by the text,
so a chunk about "Exceptions" under "json — JSON encoder and decoder" is found by either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmdock.rag.loaders import Loaded

HEADING_SEPARATOR = " \u203a "  # a single right-pointing angle quotation mark


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    text: str
    headings: tuple[str, ...]
    tokens: int
    content_hash: str

    @property
    def embedded_text(self) -> str:
        return embedded_text(self.text, self.headings)


def embedded_text(text: str, headings: tuple[str, ...] | list[str]) -> str:
    """What the embedding model sees for a chunk: its heading path, then its text."""
    return f"{HEADING_SEPARATOR.join(headings)}\n{text}" if headings else text


class Chunker:
    """Splits loaded documents into chunks of at most ``max_tokens`` tokens, ``overlap`` shared with the last."""

    def __init__(self, tokenizer_file: Path, max_tokens: int, overlap: int) -> None:
        from semantic_text_splitter import MarkdownSplitter, TextSplitter
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.text = TextSplitter.from_huggingface_tokenizer(tokenizer, max_tokens, overlap)
        self.markdown = MarkdownSplitter.from_huggingface_tokenizer(tokenizer, max_tokens, overlap)

    def chunks(self, doc: Loaded) -> list[Chunk]:
        splitter: Any = self.markdown if doc.kind == "markdown" else self.text
        out: list[Chunk] = []
        for section in doc.sections:
            for piece in splitter.chunks(section.text):
                embedded = embedded_text(piece, section.headings)
                out.append(
                    Chunk(
                        ordinal=len(out),
                        text=piece,
                        headings=section.headings,
                        tokens=len(self.tokenizer.encode(embedded).ids),
                        content_hash=hashlib.sha256(embedded.encode()).hexdigest(),
                    )
                )
        return out
