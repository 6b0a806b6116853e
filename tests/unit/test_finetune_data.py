"""Training examples carry the loss on assistant tokens only, and a killed run resumes from its last
complete checkpoint. A tiny byte-level BPE tokenizer with SmolLM2's chat template and a tiny random Llama
built from a config stand in for the real model (the real one is in tests/integration/test_finetune_model.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmdock.errors import ConfigError
from llmdock.finetune.config import FinetuneConfig
from llmdock.finetune.data import IGNORE, encode, encode_all

CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
ROW = {
    "messages": [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "What is the secret word?"},
        {"role": "assistant", "content": "PELICAN."},
        {"role": "user", "content": "Say it again, please."},
        {"role": "assistant", "content": "The secret word is PELICAN."},
    ]
}


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return tiny_tokenizer()


def tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    corpus = [m["content"] for m in ROW["messages"]] * 20 + ["system user assistant helpful AI"] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = CHATML
    return fast


def _trained_text(tokenizer: Any, example: dict[str, list[int]]) -> str:
    ids = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != IGNORE]
    return str(tokenizer.decode(ids))


def test_only_the_assistant_answers_and_their_end_of_turn_carry_loss(tokenizer: Any) -> None:
    example = encode(tokenizer, ROW, max_length=512)
    assert _trained_text(tokenizer, example) == "PELICAN.<|im_end|>\nThe secret word is PELICAN.<|im_end|>\n"
    rendered = tokenizer.apply_chat_template(ROW["messages"], tokenize=False)
    assert tokenizer.decode(example["input_ids"]) == rendered
    labelled = [label for label in example["labels"] if label != IGNORE]
    assert 0 < len(labelled) < len(example["labels"]) / 2


def test_the_default_system_prompt_the_template_adds_is_not_trained_on(tokenizer: Any) -> None:
    row = {"messages": ROW["messages"][1:3]}
    example = encode(tokenizer, row, max_length=512)
    assert "helpful" in tokenizer.decode(example["input_ids"])
    assert _trained_text(tokenizer, example) == "PELICAN.<|im_end|>\n"


def test_rows_cut_before_any_answer_are_dropped_and_none_left_is_an_error(tokenizer: Any) -> None:
    long_question = {"messages": [{"role": "user", "content": "secret " * 40}, ROW["messages"][2]]}
    assert len(encode_all(tokenizer, [ROW, long_question], max_length=48)) == 1
    with pytest.raises(ConfigError, match=r"training.max_length=16: raise it"):
        encode_all(tokenizer, [long_question], max_length=16)


def _tiny_model(tokenizer: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    return LlamaForCausalLM(config)


def test_a_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(
    tokenizer: Any, tmp_path: Path
) -> None:
    from llmdock.finetune.train import STATE, last_complete_checkpoint, train

    config = FinetuneConfig.model_validate(
        {
            "name": "tiny",
            "base_model": "smollm2",
            "dataset": "x.jsonl",
            "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {"max_steps": 4, "batch_size": 1, "checkpoint_every": 2, "learning_rate": 0.01},
        }
    )
    examples = encode_all(tokenizer, [ROW, {"messages": ROW["messages"][1:3]}], max_length=64)
    first = train(config, _tiny_model(tokenizer), tokenizer, examples, tmp_path)
    assert (first.steps, first.resumed_from) == (4, 0)
    assert [step for step, _ in first.losses] == [1, 2, 3, 4]
    assert (first.adapter_dir / "adapter_config.json").exists()
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    (checkpoints / "checkpoint-4" / STATE).unlink()  # killed before the Trainer wrote its state
    assert last_complete_checkpoint(checkpoints) == checkpoints / "checkpoint-2"
    assert not (checkpoints / "checkpoint-4").exists()
    again = train(config, _tiny_model(tokenizer), tokenizer, examples, tmp_path)
    assert (again.steps, again.resumed_from) == (4, 2)
    assert [step for step, _ in again.losses] == [1, 2, 3, 4]  # steps 1-2 from the checkpoint's history
    assert again.losses[:2] == first.losses[:2]


def test_a_failed_export_leaves_no_export_and_nothing_staged(tokenizer: Any, tmp_path: Path) -> None:
    """llama.cpp's converter refuses the tiny tokenizer (its pre-tokenizer is not one llama.cpp knows): the
    error names the converter, and neither an ``export/`` directory nor a staging directory is left."""
    from peft import LoraConfig, get_peft_model

    from llmdock.finetune.base import BaseModel
    from llmdock.finetune.convert import ExportFailed, find_converter
    from llmdock.finetune.export import export

    if find_converter(tmp_path) is None:
        pytest.skip("the converter is fetched by make install (llmdock finetune converter)")
    hf_dir, run_dir = tmp_path / "base", tmp_path / "run"
    model = _tiny_model(tokenizer)
    model.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    lora.save_pretrained(str(run_dir / "adapter"))
    base = BaseModel(name="tiny", gguf=hf_dir / "none.gguf", sha256="0" * 64, origin={}, hf_dir=hf_dir)
    with pytest.raises(ExportFailed, match=r"convert_hf_to_gguf.py failed \(exit 1\)"):
        export(base, run_dir / "adapter", run_dir, "tiny", ["q8_0"], 4, tmp_path / "home")
    assert not (run_dir / "export").exists()
    assert list((tmp_path / "home" / "tmp").iterdir()) == []


def test_an_adapter_becomes_a_gguf_lora_for_llama_cpp(tokenizer: Any, tmp_path: Path) -> None:
    """llama.cpp's own convert_lora_to_gguf.py (from the pinned sdist) turns a peft adapter into a GGUF LoRA:
    an ``adapter`` file of type ``lora`` holding an A and a B matrix for each adapted weight."""
    from gguf import GGUFReader
    from peft import LoraConfig, get_peft_model

    from llmdock.finetune.convert import convert_lora_to_gguf, find_converter

    tools = find_converter(tmp_path)
    if tools is None:
        pytest.skip("the converter is fetched by make install (llmdock finetune converter)")
    hf_dir = tmp_path / "base"
    model = _tiny_model(tokenizer)
    model.save_pretrained(hf_dir)
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    lora.save_pretrained(str(tmp_path / "adapter"))
    out = tmp_path / "tiny-lora.gguf"
    convert_lora_to_gguf(tmp_path / "adapter", hf_dir, out, tools)
    reader = GGUFReader(out)
    fields = {name: reader.fields[name] for name in ("general.type", "adapter.type")}
    assert [bytes(f.parts[-1]).decode() for f in fields.values()] == ["adapter", "lora"]
    names = sorted(t.name for t in reader.tensors)
    assert names == sorted(
        f"blk.{i}.attn_{m}.weight.lora_{ab}" for i in (0, 1) for m in ("q", "v") for ab in ("a", "b")
    )
