"""The base model as transformers trains it: its GGUF dequantised once, then cached by the GGUF's hash.

transformers reads a GGUF (``gguf_file=``) and dequantises every tensor, about 20 s for SmolLM2-135M on
two cores; the result (safetensors, config, tokenizer with the GGUF's chat template) is kept under
``<home>/finetune/base/<sha256 of the GGUF>/``, written to a temporary directory and renamed, so the next run
loads in well under a second and a killed first load leaves no half-written cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmdock.backends.model_files import resolve_model_file
from llmdock.config import Settings
from llmdock.finetune.config import base_model_spec
from llmdock.finetune.progress import status

log = logging.getLogger("llmdock")


@dataclass(frozen=True, slots=True)
class BaseModel:
    name: str  # as the config names it (smollm2, models:/NAME@alias)
    gguf: Path
    sha256: str
    origin: dict[str, str]  # model_file, and model_version / artifact for a registered version
    hf_dir: Path  # the dequantised weights, config and tokenizer

    def lineage(self) -> dict[str, Any]:
        version = self.origin.get("model_version", "")
        return {"base_model": self.name, "base_model_version": version or f"sha256:{self.sha256}"}


def gguf_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def prepare_base(name: str, settings: Settings, *, where: str) -> BaseModel:
    """The base's GGUF and its dequantised copy (made now when missing)."""
    gguf, origin = resolve_model_file(base_model_spec(name, settings), settings, where=where)
    sha = origin.get("artifact") or gguf_sha256(gguf)
    hf_dir = Path(settings.home) / "finetune" / "base" / sha
    if not (hf_dir / "config.json").exists():
        _dequantise(gguf, hf_dir)
    return BaseModel(name=name, gguf=gguf, sha256=sha, origin=origin, hf_dir=hf_dir)


def _dequantise(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    with status(f"dequantising {gguf.name} once (cached by its hash)"):
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The loaded model remembers it came from a GGUF and refuses to be saved; a plain model built from
        # the same config (without the GGUF's quantization entry) takes its dequantised tensors.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        model.load_state_dict(loaded.state_dict())
        model.generation_config = loaded.generation_config
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".incoming-") as tmp:
            staged = Path(tmp) / "model"
            model.save_pretrained(staged)
            tokenizer.save_pretrained(staged)
            try:
                os.replace(staged, target)
            except OSError:  # another run cached it first
                if not (target / "config.json").exists():
                    raise
                shutil.rmtree(staged, ignore_errors=True)
    log.info("cached the dequantised %s in %s", gguf.name, target)


def load_for_training(base: BaseModel) -> tuple[Any, Any]:
    """(model, tokenizer) in float32 from the cache."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.hf_dir)
    model = AutoModelForCausalLM.from_pretrained(base.hf_dir, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
