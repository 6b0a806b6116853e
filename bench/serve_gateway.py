"""The serving benchmark's second phase: ``llmdock serve`` as a subprocess, asked over HTTP."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from cpu_load import OtherLoad, SummedLoad, process_tree_rss_mib
from harness import Spawned, free_port, serve_command
from serve_figures import (
    CONCURRENCY,
    FIRST_ANSWER_MAX_TOKENS,
    MESSAGES,
    MODEL,
    NO_RESPONSE_CACHE,
    READY_POLL_S,
    Results,
    console,
    other_load,
    repeat,
)


def start_server(threads: int, home: Path) -> tuple[Spawned, str]:
    """``llmdock serve`` on a free port with ``home`` as LLMDOCK_HOME and cwd; (the process, its base URL)."""
    port = free_port()
    # Only our LLMDOCK_* settings, and cwd in the temp home: no developer env or ./llmdock.yaml leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMDOCK_")}
    env |= {"LLMDOCK_HOME": str(home), "LLMDOCK_N_THREADS": str(threads)}
    server = Spawned(
        serve_command(port, "--log-level", "warning"),
        env,
        cwd=home,
        log=home / "server.log",
        name="llmdock serve",
    )
    return server, f"http://127.0.0.1:{port}"


def chat_body(max_tokens: int, *, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "temperature": 0, "max_tokens": max_tokens}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def check_generated(r: httpx.Response) -> None:
    """Raise unless the answer came from the model (the requests ask to bypass the response cache)."""
    r.raise_for_status()
    state = r.headers.get("x-llmdock-cache", "off")
    if "hit" in state:
        raise RuntimeError(f"answered from the gateway's response cache ({state}), not generated")


def chat(client: httpx.Client, max_tokens: int) -> tuple[int, float]:
    """One non-streaming chat completion: (completion tokens, wall seconds)."""
    t0 = time.perf_counter()
    r = client.post("/v1/chat/completions", json=chat_body(max_tokens))
    elapsed = time.perf_counter() - t0
    check_generated(r)
    return int(r.json()["usage"]["completion_tokens"]), elapsed


def chat_stream(client: httpx.Client, max_tokens: int) -> tuple[int, float, float]:
    """One streaming chat completion: (completion tokens, seconds to first content, wall seconds)."""
    t0 = time.perf_counter()
    first: float | None = None
    tokens = chunks = 0
    with client.stream("POST", "/v1/chat/completions", json=chat_body(max_tokens, stream=True)) as r:
        check_generated(r)
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line.removeprefix("data: "))
            if "error" in event:
                raise RuntimeError(f"stream error: {event['error']}")
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
            for choice in event.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    chunks += 1
                    if first is None:
                        first = time.perf_counter() - t0
    elapsed = time.perf_counter() - t0
    if first is None:
        raise RuntimeError("the stream carried no content")
    return tokens or chunks, first, elapsed


def interleaved(
    args: argparse.Namespace,
    res: Results,
    single: Callable[[], tuple[int, float]],
    concurrent: Callable[[], tuple[list[int], float]],
) -> None:
    """c=1 and c=N in alternating blocks (ABBA order after one warm-up of each), one pair per repetition."""
    single()
    concurrent()
    loads = {"c=1": SummedLoad(), f"c={CONCURRENCY}": SummedLoad()}

    def one() -> float:
        with loads["c=1"].block():
            n, elapsed = single()
        res.c1_tok_s.samples.append(n / elapsed)
        res.note_tokens("gateway c=1", n)
        return n / elapsed

    def many() -> float:
        with loads[f"c={CONCURRENCY}"].block():
            counts, elapsed = concurrent()
        res.cn_tok_s.samples.append(sum(counts) / elapsed)
        for n in counts:
            res.note_tokens(f"gateway c={CONCURRENCY}", n)
        return sum(counts) / elapsed

    for i in range(args.reps):
        if i % 2 == 0:
            c1 = one()
            cn = many()
        else:
            cn = many()
            c1 = one()
        res.pair_ratio.samples.append(cn / c1)
    for phase, load in loads.items():
        res.other_load[phase] = load.share()


def bench_gateway(args: argparse.Namespace, res: Results, home: Path) -> None:
    startup = OtherLoad()
    server, base_url = start_server(args.threads, home)
    try:
        timeout = httpx.Timeout(args.timeout, connect=5.0)
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        with (
            httpx.Client(
                base_url=base_url, timeout=timeout, limits=limits, headers=NO_RESPONSE_CACHE
            ) as client,
            ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="bench-client") as pool,
        ):
            res.ready_s = server.wait_answering(
                f"{base_url}/ready",
                timeout_s=args.startup_timeout,
                poll_s=READY_POLL_S,
                client=client,
                request_timeout_s=2.0,
            )
            chat(client, FIRST_ANSWER_MAX_TOKENS)
            res.first_answer_s = time.perf_counter() - server.started
            res.other_load["startup"] = startup.share()

            def concurrent_round() -> tuple[list[int], float]:
                t0 = time.perf_counter()
                futures = [pool.submit(chat, client, args.max_tokens) for _ in range(CONCURRENCY)]
                counts = [f.result(timeout=args.timeout * CONCURRENCY)[0] for f in futures]
                return counts, time.perf_counter() - t0

            interleaved(args, res, partial(chat, client, args.max_tokens), concurrent_round)
            res.batching = client.get(f"/v1/models/{MODEL}").json().get("batching", {})

            with other_load(res, "stream"):
                for n, first, elapsed in repeat(args.reps, partial(chat_stream, client, args.max_tokens)):
                    res.stream_tok_s.samples.append(n / elapsed)
                    res.stream_ttft_ms.samples.append(first * 1000)
                    res.note_tokens("gateway stream", n)

            server.check_alive()
            res.rss_mib = process_tree_rss_mib(server.proc.pid)
    except BaseException:
        if server.proc.poll() is not None or args.verbose:
            console.print(f"[dim]server log:\n{server.log_tail()}[/dim]")
        raise
    finally:
        server.stop()
