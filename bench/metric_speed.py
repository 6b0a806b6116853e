"""BLEU and ROUGE-L over 10,000 (hypothesis, reference) pairs: through llmdock's metric plugins and calling
sacrebleu and rouge-score directly, in one run.

    .venv/bin/python bench/metric_speed.py                  # 10,000 pairs, 5 rounds
    .venv/bin/python bench/metric_speed.py --pairs 2000 --rounds 3

The text is real: the English sentences of PyTorch's graph-break registry (explanations and hints), a data
file the ``torch`` wheel ships (``torch/_dynamo/graph_break_registry.json``; BSD-3-Clause). Each sentence is
a reference; its hypothesis is the same sentence with seeded edits (words dropped, swapped, replaced by words
of other sentences, some added), so scores spread over 0..1 as a model's near-misses do. Pairs cycle through
the sentences with a fresh edit each time, so no two pairs are the same.

"Directly" is the fast way to call the libraries: one ``BLEU(effective_order=True)`` (what
``sacrebleu.sentence_bleu`` builds on every call) and one ``RougeScorer(["rougeL"], use_stemmer=True)``,
built once. The plugins are ``load_plugins().metrics["bleu"]`` and ``["rouge-l"]``, built once from a check,
and awaited per case (``Case``/``Output`` objects built before timing) in one event loop. Both sides are
checked to give the same values first. The machine is shared, so the pairs are timed in blocks of 1,000,
the two sides taking turns on each block (A B, then B A), for several rounds; a side's time is the sum over
blocks of its fastest round (timeit's rule: slower runs measure the neighbours, not the code). Target
(issue 14): plugins <= 1.1x direct. Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from harness import options
from rich.console import Console
from rich.table import Table
from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics.bleu import BLEU

from llmdock.evaluate import Case, Check, Output
from llmdock.plugins import load_plugins

SOURCE = ("torch", "_dynamo/graph_break_registry.json")
TARGET = 1.1
BLOCK = 1_000

Pairs = list[tuple[str, str]]  # (hypothesis, reference)


def source_sentences() -> tuple[list[str], str]:
    """The registry's explanation and hint sentences (6 to 60 words, placeholders and code left out)."""
    package, relative = SOURCE
    files = metadata.files(package) or []
    path = next(Path(str(file.locate())) for file in files if str(file).endswith(relative))
    registry = json.loads(path.read_text())
    texts = [
        text
        for entries in registry.values()
        for entry in entries
        for text in [entry.get("Explanation", ""), *entry.get("Hints", [])]
    ]
    sentences: dict[str, None] = {}
    for text in texts:
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            if 6 <= len(sentence.split()) <= 60 and not re.search(r"[{}`]", sentence):
                sentences[sentence] = None
    where = f"{package}=={metadata.version(package)} {path}"
    return list(sentences), where


def perturb(sentence: str, vocabulary: list[str], rng: random.Random) -> str:
    """A near-miss: each word dropped (10 %), replaced (10 %), or followed by another word (5 %); one swap."""
    words: list[str] = []
    for word in sentence.split():
        roll = rng.random()
        if roll < 0.10:
            continue
        words.append(rng.choice(vocabulary) if roll < 0.20 else word)
        if rng.random() < 0.05:
            words.append(rng.choice(vocabulary))
    if len(words) > 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words) or sentence


def make_pairs(count: int, seed: int) -> tuple[Pairs, str, int]:
    sentences, where = source_sentences()
    vocabulary = sorted({word for sentence in sentences for word in sentence.split()})
    rng = random.Random(seed)
    pairs = [
        (perturb(sentences[i % len(sentences)], vocabulary, rng), sentences[i % len(sentences)])
        for i in range(count)
    ]
    return pairs, where, len(sentences)


Runner = Callable[[int, int], list[float]]  # the scores of pairs[lo:hi]


def direct_runners(pairs: Pairs) -> dict[str, Runner]:
    bleu = BLEU(effective_order=True)
    rouge = RougeScorer(["rougeL"], use_stemmer=True)

    def bleu_scores(lo: int, hi: int) -> list[float]:
        return [bleu.sentence_score(hyp, [ref]).score / 100 for hyp, ref in pairs[lo:hi]]

    def rouge_scores(lo: int, hi: int) -> list[float]:
        return [rouge.score(ref, hyp)["rougeL"].fmeasure for hyp, ref in pairs[lo:hi]]

    return {"BLEU": bleu_scores, "ROUGE-L": rouge_scores}


def plugin_runners(pairs: Pairs, loop: asyncio.AbstractEventLoop) -> dict[str, Runner]:
    metrics = load_plugins(entry_points=False).metrics
    items = [
        (Case(id=str(i), expected=ref, where=f"pairs:{i}"), Output(text=hyp))
        for i, (hyp, ref) in enumerate(pairs)
    ]

    def runner(type_: str) -> Runner:
        metric = metrics[type_](Check(type=type_), None)

        async def scores(lo: int, hi: int) -> list[float]:
            return [(await metric.score(case, output)).value for case, output in items[lo:hi]]

        return lambda lo, hi: loop.run_until_complete(scores(lo, hi))

    return {"BLEU": runner("bleu"), "ROUGE-L": runner("rouge-l")}


def timed(run: Runner, lo: int, hi: int) -> float:
    start = time.perf_counter()
    run(lo, hi)
    return time.perf_counter() - start


def fastest_rounds(
    sides: dict[str, dict[str, Runner]], count: int, rounds: int
) -> dict[tuple[str, str], float]:
    """Per side and metric: the sum over blocks of the block's fastest round, the sides alternating."""
    best: dict[tuple[str, str, int], float] = {}
    order = list(sides)
    for round_ in range(rounds):
        for block, lo in enumerate(range(0, count, BLOCK)):
            hi = min(lo + BLOCK, count)
            turn = order if (round_ + block) % 2 == 0 else order[::-1]
            for side in turn:
                for name, run in sides[side].items():
                    key = (side, name, block)
                    best[key] = min(best.get(key, float("inf")), timed(run, lo, hi))
    totals: dict[tuple[str, str], float] = {}
    for (side, name, _), seconds in best.items():
        totals[side, name] = totals.get((side, name), 0.0) + seconds
    return totals


def main() -> None:
    parser = options(__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each block, per side and metric")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()

    pairs, where, distinct = make_pairs(args.pairs, args.seed)
    console = Console()
    console.print(f"{len(pairs):,} pairs from {distinct:,} sentences of {where}")
    loop = asyncio.new_event_loop()
    sides = {"direct": direct_runners(pairs), "plugins": plugin_runners(pairs, loop)}
    for name, run in sides["direct"].items():  # same values (and warm caches) before timing
        same = run(0, len(pairs)) == sides["plugins"][name](0, len(pairs))
        assert same, f"{name}: the plugin's values differ from the library's"
    times = fastest_rounds(sides, len(pairs), args.rounds)
    loop.close()

    table = Table(
        title=f"BLEU + ROUGE-L over {len(pairs):,} pairs (fastest of {args.rounds} rounds per block)"
    )
    for column in ("metric", "direct (s)", "plugins (s)", "µs/pair direct", "µs/pair plugins", "ratio"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    totals = {"direct": 0.0, "plugins": 0.0}
    for name in sides["direct"]:
        row = {side: times[side, name] for side in totals}
        totals = {side: totals[side] + row[side] for side in totals}
        table.add_row(name, *figures(row, len(pairs)))
    table.add_row("both", *figures(totals, len(pairs)), style="bold")
    console.print(table)
    ratio = totals["plugins"] / totals["direct"]
    verdict = "meets" if ratio <= TARGET else "misses"
    console.print(f"plugins / direct = {ratio:.3f}x: {verdict} the target (<= {TARGET}x)")


def figures(row: dict[str, float], count: int) -> list[str]:
    direct, plugins = row["direct"], row["plugins"]
    return [
        f"{direct:.3f}",
        f"{plugins:.3f}",
        f"{direct / count * 1e6:.1f}",
        f"{plugins / count * 1e6:.1f}",
        f"{plugins / direct:.3f}x",
    ]


if __name__ == "__main__":
    main()
