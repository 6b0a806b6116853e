"""Merge the adapter into the base, convert to GGUF, quantize, measure, and register the result.

Everything is built in a staging directory (``<home>/tmp/.export-<run>-…``): the merged weights, the f16
GGUF, each quantization. Only when every file is written and measured is the directory renamed to
``<run>/export/``; an export killed at any point leaves a staging directory with a dot name that nothing
reads, never an ``export/`` that looks complete. Registering comes last, and only from ``export/``.

Size and generation speed (tokens/s, greedy, the end-of-text token barred so every run generates the same
count) are measured on the f16 GGUF (before quantizing) and on each quantization, with llama.cpp.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmdock.finetune.base import BaseModel
from llmdock.finetune.convert import convert_lora_to_gguf, convert_to_gguf, ensure_converter, quantize
from llmdock.finetune.progress import status

SPEED_PROMPT = "<|im_start|>user\nWrite a few sentences about the sea.<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True, slots=True)
class Exported:
    directory: Path
    files: dict[str, Path]  # quantization → GGUF
    measures: dict[str, dict[str, float]]  # f16 and each quantization → size, tokens_per_s
    notes: dict[str, str]  # quantization → what llama.cpp's quantizer said (tensors that fell back)
    lora: Path | None = None  # the adapter as a GGUF LoRA, when asked for


def export(
    base: BaseModel,
    adapter_dir: Path,
    run_dir: Path,
    name: str,
    quants: Sequence[str],
    speed_tokens: int,
    home: Path,
    *,
    full: bool = False,
    lora: bool = False,
) -> Exported:
    """``adapter_dir`` is a LoRA adapter to merge into the base, or (``full``) the whole trained model."""
    tools = ensure_converter(home)
    staging_root = Path(home).expanduser() / "tmp"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=staging_root, prefix=f".export-{run_dir.name}-"))
    try:
        merged = adapter_dir if full else staging / "merged"
        if not full:
            merge_adapter(base, adapter_dir, merged)
        f16 = staging / f"{name}-f16.gguf"
        convert_to_gguf(merged, f16, tools)
        if not full:
            shutil.rmtree(merged)
        measures = {"f16": measure(f16, speed_tokens)}
        files, notes = {}, {}
        for kind in quants:
            out = staging / f"{name}-{kind}.gguf"
            note = quantize(f16, out, kind)
            measures[kind] = measure(out, speed_tokens)
            if note:
                notes[kind] = note
            files[kind] = out
        lora_file = staging / f"{name}-lora-f16.gguf"
        if lora:
            convert_lora_to_gguf(adapter_dir, base.hf_dir, lora_file, tools)
        final = run_dir / "export"
        staging.chmod(0o755)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    found = {k: final / p.name for k, p in files.items()}
    return Exported(final, found, measures, notes, final / lora_file.name if lora else None)


def merge_adapter(base: BaseModel, adapter_dir: Path, out: Path) -> None:
    """The base with the adapter's update added into its weights, saved as plain HF weights."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with status("merging the adapter into the base"):
        model = AutoModelForCausalLM.from_pretrained(base.hf_dir, dtype=torch.float32)
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
        merged.save_pretrained(out)
        AutoTokenizer.from_pretrained(base.hf_dir).save_pretrained(out)


def measure(path: Path, tokens: int) -> dict[str, float]:
    """The file's size and how fast llama.cpp generates ``tokens`` tokens from it (tokens/s)."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=256, verbose=False, seed=0)
    try:
        eos = llm.token_eos()
        started = time.perf_counter()
        out: Any = llm.create_completion(
            SPEED_PROMPT, max_tokens=tokens, temperature=0.0, logit_bias={eos: -1e9}
        )
        elapsed = time.perf_counter() - started
    finally:
        llm.close()
    generated = int(out["usage"]["completion_tokens"])
    return {"size": float(path.stat().st_size), "tokens_per_s": round(generated / elapsed, 1)}
