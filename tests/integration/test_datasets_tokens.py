"""The length filter counts tokens as the served SmolLM2 does (its GGUF's vocabulary, read without weights)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from llmdock.backends.base import BackendSpec
from llmdock.backends.llamacpp import LlamaCppBackend
from llmdock.config import Settings
from llmdock.datasets import clean as cleaning
from llmdock.datasets.steps import BUILTIN_STEPS
from llmdock.datasets.tokens import TokenCounter

pytestmark = pytest.mark.model
TEXTS = [
    "Hello, world!",
    "Die Hauptstadt von Deutschland ist Berlin.",
    "naïve café \u2013 東京 🙂",
    "x" * 300,
]


async def test_length_filter_counts_the_served_models_tokens(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    path = cleaning.model_file(settings, "smollm2")
    spec = BackendSpec(name="smollm2", params={"model_path": str(path), "n_threads": 1})
    backend = LlamaCppBackend(spec, settings)
    await backend.start()
    try:
        served = [backend.count_tokens(t) for t in TEXTS]
    finally:
        await backend.close()
    counter = TokenCounter(path)
    assert [counter.count(t) for t in TEXTS] == served
    counter.close()

    rows = [
        {"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok"}], "meta": {}}
        for t in TEXTS
    ]
    known = {c.name: c for c in BUILTIN_STEPS}
    limit = sorted(served)[
        2
    ]  # keeps the two shortest texts and the one at the limit, less the answer's token
    ctx = cleaning.context(settings)
    steps = [cleaning._build(s, known) for s in cleaning.cli_specs([f"length max_tokens={limit + 1}"], known)]
    kept, [record] = cleaning.run_steps(copy.deepcopy(rows), steps, ctx)
    assert len(kept) == 3
    assert record["dropped"] == {f"over {limit + 1} tokens": 1}
    assert record["figures"]["model"] == "smollm2"
