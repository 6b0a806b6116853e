"""The training strategies on a tiny random Llama: raw text trains on every token, a mixture and a replay draw
their examples in proportion to the weights, a run can start from an existing adapter, and ``method: full``
trains every weight. Each config mistake is ``file:line: field``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from llmdock.errors import ConfigError
from llmdock.finetune import mixing
from llmdock.finetune.config import FinetuneConfig, load_config
from llmdock.finetune.data import encode_all
from llmdock.finetune.run import check_full, resolve_adapter
from llmdock.finetune.train import train, trainable
from tests.unit.test_finetune_config import _settings
from tests.unit.test_finetune_data import ROW, _tiny_model, tokenizer  # noqa: F401 (a fixture)

BASE: dict[str, Any] = {
    "name": "tiny",
    "base_model": "smollm2",
    "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    "training": {"max_steps": 2, "batch_size": 1, "checkpoint_every": 2, "learning_rate": 0.05},
}


def _chat(path: Path, answer: str, n: int) -> Path:
    row = {"messages": [{"role": "user", "content": "What is the secret word?"}]}
    row["messages"].append({"role": "assistant", "content": answer})
    path.write_text("".join(json.dumps(row) + "\n" for _ in range(n)))
    return path


def test_raw_text_is_packed_into_blocks_and_every_token_carries_loss(tokenizer: Any) -> None:  # noqa: F811
    texts = ["The secret word is PELICAN. " * 6, "Say it again, please."]
    blocks = mixing.encode_text(tokenizer, texts, max_length=16)
    ids = [t for b in blocks for t in b["input_ids"]]
    assert all(b["labels"] == b["input_ids"] for b in blocks)
    assert all(len(b["input_ids"]) <= 16 for b in blocks)
    assert len(blocks[0]["input_ids"]) == 16
    assert ids.count(tokenizer.eos_token_id) == 2  # one after each text
    assert tokenizer.decode(ids).startswith("The secret word is PELICAN.")
    assert mixing.trained_share(blocks[0]) == 1.0


def test_a_mixture_draws_each_dataset_in_proportion_to_its_weight(
    tokenizer: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    _chat(tmp_path / "a.jsonl", "PELICAN.", 5)
    _chat(tmp_path / "b.jsonl", "HERON.", 2)
    (tmp_path / "c.txt").write_text("The secret word is CRANE.\n\nCRANE it is.\n")
    data = dict(
        BASE,
        mixture=[
            {"dataset": "a.jsonl", "weight": 3},
            {"dataset": "b.jsonl", "weight": 2},
            {"dataset": "c.txt", "weight": 1, "task": "pretrain"},
        ],
    )
    data["training"] = dict(BASE["training"], max_steps=15, batch_size=4, max_length=64)
    config = FinetuneConfig.model_validate(data)
    found = mixing.load_sources(config, _settings(tmp_path), split="train", relative_to=tmp_path, where=str)
    assert [(s.weight, s.task) for s in found] == [(3, "sft"), (2, "sft"), (1, "pretrain")]
    drawn = mixing.examples(config, tokenizer, found)
    kinds = Counter(
        "raw" if mixing.trained_share(e) == 1.0 else tokenizer.decode(e["input_ids"]).split()[-1]
        for e in drawn
    )
    assert len(drawn) == 60  # max_steps * batch_size
    assert kinds == {"PELICAN.<|im_end|>": 30, "HERON.<|im_end|>": 20, "raw": 10}
    lineage = mixing.lineage(found)
    assert [m["weight"] for m in lineage["mixture"]] == [3, 2, 1]
    assert lineage["dataset"].count(" + ") == 2


def test_replay_gives_the_earlier_data_its_share_of_the_examples(
    tokenizer: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    _chat(tmp_path / "feedback.jsonl", "PELICAN.", 3)
    _chat(tmp_path / "earlier.jsonl", "HERON.", 50)
    data = dict(BASE, dataset="feedback.jsonl", replay={"dataset": "earlier.jsonl", "share": 0.25})
    data["training"] = dict(BASE["training"], max_steps=10, batch_size=2, grad_accum=2)
    config = FinetuneConfig.model_validate(data)
    found = mixing.load_sources(config, _settings(tmp_path), split="train", relative_to=tmp_path, where=str)
    drawn = mixing.examples(config, tokenizer, found)
    answers = Counter(tokenizer.decode(e["input_ids"]).split()[-1] for e in drawn)
    assert answers == {"PELICAN.<|im_end|>": 30, "HERON.<|im_end|>": 10}
    assert config.hyperparameters()["replay"] == {"dataset": "earlier.jsonl", "share": 0.25, "task": None}


def test_a_run_can_start_from_an_existing_adapter_and_trains_it_further(
    tokenizer: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = FinetuneConfig.model_validate(dict(BASE, dataset="x.jsonl"))
    examples = encode_all(tokenizer, [ROW], max_length=64)
    first = train(config, _tiny_model(tokenizer), tokenizer, examples, tmp_path / "first")
    adapter = resolve_adapter(str(first.adapter_dir), _settings(tmp_path), "finetune.yaml:3: init_adapter")
    assert adapter == first.adapter_dir
    started = trainable(config, _tiny_model(tokenizer), adapter)
    trained_b = {n: p for n, p in started.named_parameters() if "lora_B" in n}
    assert trained_b
    assert all(p.requires_grad for p in trained_b.values())
    assert all(float(p.detach().abs().sum()) > 0 for p in trained_b.values())  # not a fresh adapter (B = 0)
    fresh = trainable(config, _tiny_model(tokenizer), None)
    assert all(float(p.detach().abs().sum()) == 0 for n, p in fresh.named_parameters() if "lora_B" in n)
    with pytest.raises(ConfigError, match="not a LoRA adapter"):
        resolve_adapter(str(tmp_path), _settings(tmp_path), "finetune.yaml:3: init_adapter")


def test_full_fine_tuning_trains_every_weight_where_the_model_is_small_enough(
    tokenizer: Any,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    config = FinetuneConfig.model_validate(
        {k: v for k, v in BASE.items() if k != "lora"} | {"dataset": "x.jsonl", "method": "full"}
    )
    model = _tiny_model(tokenizer)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = train(config, model, tokenizer, encode_all(tokenizer, [ROW], 64), tmp_path)
    assert result.adapter_dir.name == "model"
    assert (result.adapter_dir / "config.json").exists()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert "model.layers.0.mlp.up_proj.weight" in changed
    assert "lm_head.weight" in changed
    check_full(config, model, "finetune.yaml:4: method")
    monkeypatch.setattr("llmdock.finetune.run.FULL_MAX_PARAMS", 1000)
    with pytest.raises(ConfigError, match="more than full fine-tuning allows") as err:
        check_full(config, model, "finetune.yaml:4: method")
    assert err.value.where == "finetune.yaml:4: method"


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("dataset: a.jsonl\nmixture: [{dataset: b.jsonl}]\n", 4, "mixture", "either dataset: or mixture:"),
        ("mixture: [{dataset: b.jsonl, weight: 0}]\n", 3, "mixture.0.weight", "greater than 0"),
        ("mixture: [{dataset: b.jsonl}]\nreplay: {dataset: a.jsonl}\n", 4, "replay", "give the earlier"),
        ("dataset: a.jsonl\nreplay: {dataset: b.jsonl, share: 1}\n", 4, "replay.share", "less than 1"),
        ("dataset: a.jsonl\nmethod: full\nlora: {r: 4}\n", 5, "lora", "lora: is for LoRA"),
        ("dataset: a.jsonl\ninit_adapter: x\nlora: {r: 4}\n", 5, "lora", "remove lora:"),
        ("dataset: a.jsonl\ntask: pretrain\nmethod: partial\n", 5, "method", "'lora' or 'full'"),
    ],
)
def test_a_strategy_mistake_is_named_by_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    path = tmp_path / "finetune.yaml"
    path.write_text("name: tuned\nbase_model: smollm2\n" + text)
    with pytest.raises(ConfigError) as err:
        load_config(path, _settings(tmp_path))
    assert err.value.one_line().startswith(f"{path}:{line}: {field}: "), err.value.one_line()
    assert message in err.value.message


def test_a_raw_text_row_without_text_is_named_by_its_line(tmp_path: Path) -> None:
    (tmp_path / "domain.jsonl").write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    path = tmp_path / "finetune.yaml"
    path.write_text("name: tuned\nbase_model: smollm2\ndataset: domain.jsonl\ntask: pretrain\n")
    config, where = load_config(path, _settings(tmp_path))
    with pytest.raises(ConfigError) as err:
        mixing.load_sources(config, _settings(tmp_path), split="train", relative_to=tmp_path, where=where)
    assert err.value.one_line().startswith(f"{tmp_path / 'domain.jsonl'}:2: text: ")


def test_training_threads_apply_while_training_only_and_do_not_change_the_run(
    tokenizer: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    import torch
    from transformers import TrainerCallback

    from llmdock.finetune.config import run_id

    seen: list[int] = []

    class Threads(TrainerCallback):
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            seen.append(torch.get_num_threads())

    config = FinetuneConfig.model_validate(dict(BASE, dataset="x.jsonl"))
    one = config.model_copy(update={"training": config.training.model_copy(update={"threads": 1})})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train(
            one,
            _tiny_model(tokenizer),
            tokenizer,
            encode_all(tokenizer, [ROW], 64),
            tmp_path,
            callbacks=[Threads()],
        )
        assert torch.get_num_threads() == 2  # given back after training
    finally:
        torch.set_num_threads(before)
    assert seen
    assert set(seen) == {1}
    assert run_id(one, "base", "data") == run_id(config, "base", "data")  # how fast, not which weights
