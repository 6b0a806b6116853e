"""The trace ingester's memory and CPU under a feed whose batch sizes vary, as a server's do (issue 15).

The 10-minute soak saw the ingester's RSS grow 69.6 -> 93.8 MiB, still rising. Here an :class:`Ingester`
stores, in this process, what a journal receives in rounds of a random 1 to 256 traces each (a served load's
batches: whatever arrived in the last ``flush_interval_s``); the RSS is printed every 50 rounds, and the CPU
time of the ingester's rounds per trace at the end. ``--fixed`` gives every round 256 traces instead.

Each distinct number of rows in a multi-row INSERT is a distinct SQLite statement, kept prepared in sqlite3's
cache (128 per connection): statements of every size up to 256 rows grew the RSS by ~60 MiB over the first
~200 rounds. The writer now only uses power-of-two row counts (store/traces.py ``_insert_many_rows``).

Usage: .venv/bin/python bench/ingest_memory.py [--rounds 400] [--fixed] [--seed 0]
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from harness import options

from llmdock.store import Journal, Store
from llmdock.store.ingest import MARKER, Ingester

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.integration.test_store
from tests.integration.test_store import make_trace


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--fixed", action="store_true", help="256 traces every round")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="llmdock-ingest-memory-"))
    store = Store(f"sqlite:///{work / 'db.sqlite'}")
    journal = Journal(work / "journal")
    (journal.dir / MARKER).touch()
    ingester = Ingester(store, work / "journal", batch_size=256)
    traces = 0
    cpu = 0.0
    first = rss_mib()
    try:
        for done in range(1, args.rounds + 1):
            for _ in range(256 if args.fixed else rng.randint(1, 256)):
                journal.append(make_trace(uuid.uuid4().hex, n_spans=6))
                traces += 1
            start = time.thread_time()
            while ingester.run_once():
                pass
            cpu += time.thread_time() - start
            if done % 50 == 0 or done == 1:
                print(f"round {done:4d}: {traces:7,d} traces stored, RSS {rss_mib():6.1f} MiB", flush=True)
    finally:
        journal.close(remove=True)
        store.close()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"RSS growth from the first round: {rss_mib() - first:+.1f} MiB; ingester CPU {cpu / traces * 1e3:.3f} ms per trace"
    )


if __name__ == "__main__":
    main()
