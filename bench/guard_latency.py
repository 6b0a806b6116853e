"""The guard_in stage's latency on 1,000-character prompts: the chain and each detector, wall clock and CPU.

    .venv/bin/python bench/guard_latency.py                              # this checkout's code
    .venv/bin/python bench/guard_latency.py --baseline /work/main/src    # A/B beside another checkout's code

Each code version runs in a worker process of its own (``PYTHONPATH`` = its ``src``), which builds the
``guard_in`` stage twice (the default input detectors; every input detector) over the fake backend and
times requests with one 1,000-character user message (the test split's texts, joined and cut). With a
baseline, the workers take turns in blocks (A B B A …), so both see the same load drift. Each detector's
own time is taken inside the every-detector chain, where detectors share the text's normalisation (the
first one to need it pays for it).

Wall-clock time on a shared machine includes time spent waiting for a core; the CPU time of the thread
is what the guards themselves cost. The load average is printed with the figures so a reader can judge
the noise. Figures are printed, never asserted; the target (issue 6) is the chain's P50 <= 10 ms.
"""

from __future__ import annotations

from guard_timing import ensure_models, options, test_rows, thousand_char_prompts, time_chain


def main() -> None:
    args = options(__doc__.splitlines()[0]).parse_args()
    ensure_models(args.model_dir)
    time_chain(args, thousand_char_prompts(test_rows()))


if __name__ == "__main__":
    main()
