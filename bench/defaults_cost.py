"""What the safe defaults cost per request: the trace journal and PII masking, each on and off, in one run.

``llmdock serve`` on the fake backend (a stand-in model: the point is what the gateway adds) answers a chat
request whose prompt holds an e-mail address and a phone number; wrk at one connection measures P50 and
P99 for each configuration, in interleaved rounds so that load from elsewhere on the machine falls on all:

  everything off       trace.journal: false, privacy.pii: off (the gateway before issue 15)
  journal              trace.journal: true (the default: each trace written to the journal before answering)
  journal + fsync      trace.journal_sync: fsync (answers wait for a group fsync)
  journal + PII mask, patterns only   the entities of issue 15 (cards, e-mails, IBANs, IPs, phones, SSNs)
  journal + PII mask   the defaults: journal on, privacy.pii: mask (masked before the journal sees it),
                       with issue 16's names, street addresses, ID numbers and dates of birth; the traces
                       stored by the ingester process (trace.ingest: auto under serve)
  journal + PII mask + NER            privacy.ner: spaCy's NER for names besides the name lists
  writer thread        the defaults, but stored by a writer thread in the worker (trace.ingest: thread)

Usage: .venv/bin/python bench/defaults_cost.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from harness import FAKE_CONFIG, fake_server, options, wrk
from rich.console import Console
from rich.table import Table

BODY = json.dumps(
    {
        "model": "fake",
        "messages": [
            {
                "role": "user",
                "content": "Mail maria.gonzalez@example.org or call 415-555-0173 about my order.",
            }
        ],
        "max_tokens": 16,
    }
)
CONFIGS = {
    "everything off": "trace: {journal: false}\nprivacy: {pii: 'off'}\n",
    "journal": "privacy: {pii: 'off'}\n",
    "journal + fsync": "trace: {journal_sync: fsync}\nprivacy: {pii: 'off'}\n",
    "journal + PII mask, patterns only (issue 15's entities)": (
        "privacy: {entities: [CREDIT_CARD, CRYPTO, EMAIL_ADDRESS, IBAN_CODE, IP_ADDRESS, PHONE_NUMBER, US_SSN]}\n"
    ),
    "journal + PII mask (defaults)": "",
    "journal + PII mask + NER (privacy.ner)": "privacy: {ner: true}\n",
    "defaults, writer thread (before the ingester)": "trace: {ingest: thread}\n",
}


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--seconds", type=int, default=10, help="wrk seconds per configuration and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name, extra in CONFIGS.items():
            with fake_server(Path(tempfile.mkdtemp(prefix="llmdock-defaults-")), FAKE_CONFIG + extra) as url:
                wrk(url + "/v1/chat/completions", 2, BODY)  # warm up (the PII engine loads on first use)
                results[name].append(wrk(url + "/v1/chat/completions", args.seconds, BODY))
    table = Table(
        "configuration",
        "requests/s",
        "P50 ms",
        "P99 ms",
        "P50 added",
        title="llmdock gateway, fake model, c=1",
    )
    base = statistics.median(r[1] for r in results["everything off"])
    for name, runs in results.items():
        rps, p50, p99 = (statistics.median(r[i] for r in runs) for i in range(3))
        table.add_row(name, f"{rps:,.0f}", f"{p50:.2f}", f"{p99:.2f}", f"{p50 - base:+.2f}")
    Console(width=120).print(table)
    print(f"medians of {args.rounds} interleaved rounds of {args.seconds} s each")


if __name__ == "__main__":
    main()
