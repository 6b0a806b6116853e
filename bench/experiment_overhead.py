"""What an A/B experiment adds on the request path: assigning a variant and counting its guard rails, beside
the same request without an experiment; and what a worker's guard-rail beat costs.

In process, on the fake backend (a constant stand-in upstream: the point is what the gateway adds), a stored
prompt template with two versions. Two runtimes are built on two stores: one with a running 50/50 experiment
on the template (with guard rails), one without. For each, ``build_context`` (parse-free: the body is already
validated; where the assignment happens: the in-memory table lookup, the sticky hash, the body rewritten to the
variant) plus the trace sink's experiment observer (``ExperimentWatch.observe``: the guard-rail counters) is
timed for many requests from distinct users, in alternating rounds (the machine drifts). Also printed:
``assign_variant`` and ``observe`` alone. Timings on a shared machine are noisy; the difference of the medians
is what the target is about.

The guard-rail beat: ``--guard-traces`` traces of the experiment are stored, then timed: what a worker read
every 5 s before (``variant_stats``: the experiment's traces and their feedback), against what its beat does
now every 0.5 s (``apply_guards``: the counters' flags, no store read unless a variant is to be stopped), with
the SQL statements each runs.

Usage: .venv/bin/python bench/experiment_overhead.py [--requests 5000] [--rounds 5] [--guard-traces 20000]
Target (issue 19): the experiment's cost on the hot path <= 0.05 ms P50.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import FAKE_CONFIG, options, percentiles
from rich.console import Console
from rich.progress import Progress
from rich.table import Table


async def runtime_with(experiment: bool) -> Any:
    from llmdock.config import load_settings
    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.spec import ExperimentSpec, GuardRails, parse_variant
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
        guard = GuardRails(max_error_rate=0.5, max_block_rate=0.5, max_p50_ms=60_000.0)
        ExperimentBook(runtime.store).create(
            ExperimentSpec("tone", variants, guard=guard), actor, runtime.backends
        )
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


def finished(ctx: Any) -> Any:
    """The trace record the sink would hand its observers for this request (answered in 12 ms)."""
    from llmdock.store.trace_records import TraceRecord

    return TraceRecord(ctx.trace_id, datetime.now(UTC), "chat", "fake", "ok", 12.0, attributes=ctx.attributes)


async def time_build(runtime: Any, n: int, start: int) -> list[float]:
    from llmdock.gateway.inference import build_context

    inputs = [request(f"user-{start + i}") for i in range(n)]
    observe = runtime.experiments.observe
    times = []
    for req, body in inputs:
        t0 = time.perf_counter()
        ctx = await build_context(runtime, req, body)
        t1 = time.perf_counter()
        rec = finished(ctx)  # built by the sink in any case: not the experiment's cost
        t2 = time.perf_counter()
        observe(rec)
        times.append((time.perf_counter() - t2 + t1 - t0) * 1000)
    return times


def tagged(n: int, tail: str = "") -> list[Any]:
    """``n`` answered requests of the experiment, alternately of each variant."""
    from llmdock.experiments.live import EXPERIMENT, VARIANT
    from llmdock.store.trace_records import TraceRecord

    now, variant = datetime.now(UTC), [{EXPERIMENT: "tone", VARIANT: v} for v in "ab"]
    return [TraceRecord(f"{i:031x}{tail or '0'}", now, "chat", "fake", "ok", 12.0, attributes=variant[i % 2])
            for i in range(n)]  # fmt: skip


def time_observe(runtime: Any, n: int) -> list[float]:
    recs = tagged(n)
    times = []
    for rec in recs:
        t0 = time.perf_counter()
        runtime.experiments.observe(rec)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def guard_beat(runtime: Any, traces: int) -> list[tuple[str, float, int]]:
    """(what, ms, SQL statements) for the old beat's read and the new beat, over ``traces`` stored traces."""
    from sqlalchemy import event

    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.results import variant_stats
    from llmdock.store import write_traces

    store = runtime.store
    recs = tagged(traces, "f")
    write_traces(store, recs, yield_gil=False)
    row = ExperimentBook(store).get("tone")
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    found = []
    for what, beat in (
        (f"before: variant_stats over {traces:,} traces (every 5 s)", lambda: variant_stats(store, row)),
        ("now: apply_guards, nothing to stop (every 0.5 s)", runtime.experiments.apply_guards),
    ):
        statements.clear()
        t0 = time.perf_counter()
        beat()
        found.append((what, (time.perf_counter() - t0) * 1000, len(statements)))
    return found


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
    parser.add_argument("--guard-traces", type=int, default=20_000)
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
    observed = time_observe(with_exp, args.requests)
    table = Table("request", "P50 ms", "P99 ms", "n")
    for label, times in (
        ("no experiment", off),
        ("with experiment (guarded)", on),
        ("assign_variant alone", assign),
        ("observe alone (guard counters)", observed),
    ):
        p50, p99 = percentiles(times)
        table.add_row(label, f"{p50:.4f}", f"{p99:.4f}", str(len(times)))
    Console().print(table)
    delta = statistics.median(on) - statistics.median(off)
    verdict = "within" if delta <= 0.05 else "OVER"
    Console().print(
        f"experiment cost on the hot path: {delta * 1000:+.1f} µs P50 ({verdict} the 0.05 ms target)"
    )
    beats = Table("guard-rail beat", "ms", "SQL statements")
    for what, ms, statements in guard_beat(with_exp, args.guard_traces):
        beats.add_row(what, f"{ms:.2f}", str(statements))
    Console().print(beats)
    for rt in (with_exp, without):
        await rt.close()


if __name__ == "__main__":
    asyncio.run(main())
