"""The serving benchmark's first phase: the model in this process through llama-cpp-python, no gateway."""

from __future__ import annotations

import argparse
import gc
import importlib.resources
import time
from functools import partial
from typing import Any

from cpu_load import SummedLoad
from serve_figures import (
    CONCURRENCY,
    GGUF_FILE,
    GGUF_PACKAGE,
    MESSAGES,
    N_BATCH,
    N_CTX,
    Results,
    Series,
    other_load,
    repeat,
)


def raw_chat(llm: Any, max_tokens: int) -> tuple[int, float]:
    """One in-process chat completion: (completion tokens, wall seconds)."""
    t0 = time.perf_counter()
    out = llm.create_chat_completion(messages=MESSAGES, temperature=0, max_tokens=max_tokens)
    return int(out["usage"]["completion_tokens"]), time.perf_counter() - t0


class RawBatch:
    """``llama_decode`` alone on the raw model: ``n`` sequences per call, greedy, end-of-text ignored.

    No server, no engine, no sampling beyond argmax: the aggregate tokens/s of 1 and of ``CONCURRENCY``
    sequences per call is the most continuous batching can give on this machine (on a CPU a step of four
    tokens costs nearly four steps of one when the matrix products are compute-bound).
    """

    def __init__(self, llm: Any, threads: int) -> None:
        import llama_cpp

        self.lib = llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max = N_CTX * CONCURRENCY, CONCURRENCY
        params.n_batch = params.n_ubatch = N_BATCH
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False  # as the backend's engine (src/llmdock/backends/llama_batch.py)
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        self.batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self.greedy = llama_cpp.llama_sampler_init_greedy()
        self.prompt: list[int] = llm.tokenize(MESSAGES[1]["content"].encode())

    def close(self) -> None:
        self.lib.llama_sampler_free(self.greedy)
        self.lib.llama_batch_free(self.batch)
        self.lib.llama_free(self.ctx)

    def _decode(self, tokens: list[tuple[int, int, int, bool]]) -> None:
        for i, (token, pos, seq, logits) in enumerate(tokens):
            self.batch.token[i], self.batch.pos[i], self.batch.logits[i] = token, pos, logits
            self.batch.n_seq_id[i], self.batch.seq_id[i][0] = 1, seq
        self.batch.n_tokens = len(tokens)
        if self.lib.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed")

    def rate(self, n: int, max_tokens: int) -> float:
        """Aggregate generated tokens/s of ``n`` sequences decoded together (prompts included in the time)."""
        lib, p = self.lib, len(self.prompt)
        lib.llama_memory_clear(lib.llama_get_memory(self.ctx), True)
        t0 = time.perf_counter()
        self._decode([(tok, i, s, i == p - 1) for s in range(n) for i, tok in enumerate(self.prompt)])
        nxt = [lib.llama_sampler_sample(self.greedy, self.ctx, (s + 1) * p - 1) for s in range(n)]
        for pos in range(p, p + max_tokens - 1):
            self._decode([(nxt[s], pos, s, True) for s in range(n)])
            nxt = [lib.llama_sampler_sample(self.greedy, self.ctx, s) for s in range(n)]
        return n * max_tokens / (time.perf_counter() - t0)


def bench_raw_batch(args: argparse.Namespace, res: Results, llm: Any) -> None:
    """1 and CONCURRENCY sequences per llama_decode, in alternating blocks (one warm-up each)."""
    raw = RawBatch(llm, args.threads)
    try:
        raw.rate(1, args.max_tokens)
        raw.rate(CONCURRENCY, args.max_tokens)
        load = SummedLoad()
        for i in range(args.reps):
            with load.block():
                order = (1, CONCURRENCY) if i % 2 == 0 else (CONCURRENCY, 1)
                rates = {n: raw.rate(n, args.max_tokens) for n in order}
            res.raw_batch_1.samples.append(rates[1])
            res.raw_batch_n.samples.append(rates[CONCURRENCY])
        res.other_load["raw batch"] = load.share()
    finally:
        raw.close()


def bench_raw(args: argparse.Namespace, res: Results, phase: str) -> None:
    from llama_cpp import Llama

    path = importlib.resources.files(GGUF_PACKAGE) / GGUF_FILE
    t0 = time.perf_counter()
    llm: Any = Llama(  # Any, as in the backend: its TypedDict messages and union returns add nothing here
        model_path=str(path),
        n_ctx=N_CTX,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=N_BATCH,
        verbose=False,
    )
    res.raw_load_s.append(time.perf_counter() - t0)
    try:
        series = res.raw.setdefault(phase, Series())
        with other_load(res, f"raw {phase}"):
            for n, elapsed in repeat(args.reps, partial(raw_chat, llm, args.max_tokens)):
                series.samples.append(n / elapsed)
                res.note_tokens("raw", n)
        if phase == "before":
            bench_raw_batch(args, res, llm)
    finally:
        llm.close()
        del llm
        gc.collect()
