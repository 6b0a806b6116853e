"""Counting tokens with the target model's own tokenizer, read from its GGUF without loading the weights.

llama.cpp loads only the vocabulary (``vocab_only``: no tensors, a few milliseconds for SmolLM2) and
tokenizes the way the served model does (``backends/llamacpp.py``'s ``count_tokens``: no BOS, no special
tokens parsed), so a length filter in tokens agrees with what the model will see.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmdock.errors import ConfigError


class TokenCounter:
    def __init__(self, path: Path) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        llama_cpp.llama_backend_init()
        try:
            self._model: Any = LlamaModel(path_model=str(path), params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot read the tokenizer of {str(path)!r}: {exc}") from None

    def count(self, text: str) -> int:
        return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        self._model.close()
