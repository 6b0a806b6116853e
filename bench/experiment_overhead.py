"""What an A/B experiment adds on the request path: assigning a variant, beside the same request without one.

In process, on the fake backend (a constant stand-in upstream: the point is what the gateway adds), a stored
prompt template with two versions. Two runtimes are built on two stores: one with a running 50/50 experiment
on the template, one without. For each, ``build_context`` (parse-free: the body is already validated) is
timed for many requests from distinct users, in alternating rounds (the machine drifts): that is where the
assignment happens (the in-memory table lookup, the sticky hash, the body rewritten to the variant). Also
printed: ``assign_variant`` alone. Timings on a shared machine are noisy; the difference of the medians is
what the target is about.

Usage: .venv/bin/python bench/experiment_overhead.py [--requests 5000] [--rounds 5]
Target (issue 19): the experiment's cost on the hot path <= 0.05 ms P50.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import FAKE_CONFIG, options, percentiles
from rich.console import Console
from rich.progress import Progress
from rich.table import Table


async def runtime_with(experiment: bool) -> Any:
    from llmdock.config import load_settings
    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.spec import ExperimentSpec, parse_variant
    from llmdock.runtime import Runtime
    from llmdock.store.audit import Actor

    home = Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    (home / "llmdock.yaml").write_text(FAKE_CONFIG)
    runtime = Runtime(load_settings(home / "llmdock.yaml", home=home))
    assert runtime.store is not None
    assert runtime.prompts is not None
    actor = Actor("bench", "bench")
    for text in ("Short: {{ q }}", "Long: {{ q }}"):
        runtime.prompts.registry.create(
            "support", actor, kind="chat", template=[{"role": "user", "content": text}]
        )
    runtime.prompts.registry.labels.set("support", "production", 1, actor)
    if experiment:
        variants = [parse_variant("a=prompt:support@1"), parse_variant("b=prompt:support@2")]
        variants[0].weight = variants[1].weight = 50
        ExperimentBook(runtime.store).create(ExperimentSpec("tone", variants), actor, runtime.backends)
    await runtime.start()
    return runtime


def request(user: str) -> tuple[Any, Any]:
    from starlette.requests import Request

    from llmdock.gateway.schemas import ChatCompletionBody

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [],
        "query_string": b"",
    }
    body = ChatCompletionBody.model_validate(
        {
            "model": "fake",
            "messages": [],
            "prompt_id": "support",
            "prompt_variables": {"q": "hi"},
            "user": user,
        }
    )
    return Request(scope), body


async def time_build(runtime: Any, n: int, start: int) -> list[float]:
    from llmdock.gateway.inference import build_context

    inputs = [request(f"user-{start + i}") for i in range(n)]
    times = []
    for req, body in inputs:
        t0 = time.perf_counter()
        await build_context(runtime, req, body)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def time_assign(runtime: Any, n: int) -> list[float]:
    from llmdock.gateway.experiments import assign_variant

    inputs = [request(f"user-{i}") for i in range(n)]
    times = []
    for req, body in inputs:
        t0 = time.perf_counter()
        found = assign_variant(runtime, req, body, None, "fallback")
        times.append((time.perf_counter() - t0) * 1000)
        assert found is not None
    return times


async def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with_exp, without = await runtime_with(True), await runtime_with(False)
    await time_build(with_exp, 200, 10**6)  # warm: prompt versions cached, code paths hot
    await time_build(without, 200, 10**6)
    on: list[float] = []
    off: list[float] = []
    with Progress() as progress:
        task = progress.add_task("rounds", total=args.rounds)
        for r in range(args.rounds):
            on += await time_build(with_exp, args.requests, r * args.requests)
            off += await time_build(without, args.requests, r * args.requests)
            progress.advance(task)
    assign = time_assign(with_exp, args.requests)
    table = Table("request", "P50 ms", "P99 ms", "n")
    for label, times in (("no experiment", off), ("with experiment", on), ("assign_variant alone", assign)):
        p50, p99 = percentiles(times)
        table.add_row(label, f"{p50:.4f}", f"{p99:.4f}", str(len(times)))
    Console().print(table)
    delta = statistics.median(on) - statistics.median(off)
    verdict = "within" if delta <= 0.05 else "OVER"
    Console().print(
        f"experiment cost on the hot path: {delta * 1000:+.1f} µs P50 ({verdict} the 0.05 ms target)"
    )
    for rt in (with_exp, without):
        await rt.close()


if __name__ == "__main__":
    asyncio.run(main())
