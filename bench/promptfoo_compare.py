"""The 200-case suite of eval_speed.py with promptfoo and with ``llmdock eval run``, both against one
``llmdock serve``, in one run: wall time and peak resident memory of each client, side by side.

    .venv/bin/python bench/promptfoo_compare.py             # 200 cases, concurrency 4: minutes on idle cores
    .venv/bin/python bench/promptfoo_compare.py --cases 40 --rounds 3 --no-in-process
    .venv/bin/python bench/promptfoo_compare.py --model fake --rounds 3   # the clients' own cost only
    .venv/bin/python bench/promptfoo_compare.py --concurrency 0          # each tool at its own default

promptfoo 0.118.0 (npm, Node 20 from Debian) is installed into bench/.node/ by ``bash scripts/system-deps.sh
bench`` (``make bench`` runs it). The cases are eval_speed.py's (harness.make_rows: sentences of mypyc's docs
from the mypy wheel, "Repeat this sentence exactly: S" / "What is the first word of this sentence? S").

One ``llmdock serve`` (SmolLM2-135M-Instruct Q4_1, ``--threads``, its response cache off: ``cache: {exact:
false}``, so neither client is answered from the other's run) answers both clients; it is started, and its
model has answered once, before anything is timed. Each client then runs as its own process, timed from its
start to its exit (start-up, reading the suite, the requests, scoring, storing results, its report):
  (a) llmdock (url): ``llmdock eval run suite.yaml --concurrency C``, the target ``url: <server>/v1, model:
      smollm2``, results stored in a fresh SQLite store (LLMDOCK_HOME of its own);
  (b) promptfoo: ``promptfoo eval -c promptfooconfig.yaml -j C --no-cache -o results.json``, the provider
      ``openai:chat:smollm2`` with ``apiBaseUrl: <server>/v1``, results in its own SQLite database
      (PROMPTFOO_CONFIG_DIR of its own), telemetry and update checks off;
  (c) llmdock (in process), unless --no-in-process: the same suite with the target ``model: smollm2``, the
      served pipeline in the client's own process (it loads the model: not comparable with (a) and (b), which
      share the server's; shown for what HTTP costs).
Peak RSS is the highest sum of VmRSS over the client process and its descendants, polled every 50 ms; the
server's peak while each client ran is a column of its own (it is the same server for both). Before the timed
rounds every client runs an untimed 4-case warm-up (the disk cache then holds Node's 700 MB of modules and
Python's packages alike). With --rounds N each client runs the suite N times, the order rotating; the wall
time is the median, the ratio column is the median of each round's ratio to promptfoo.

``--concurrency 0`` runs each tool as a new user would, at its own default: no ``concurrency`` in the llmdock
suite and no ``--concurrency`` flag (llmdock's default, 4), no ``-j`` for promptfoo (its default
maxConcurrency, 4); the server decodes ``n_parallel`` (4 for the built-in SmolLM2) sequences at once.

Equivalent on both sides: the messages (one user message, the question; promptfoo's prompt is ``{{input}}``),
model, temperature 0 (promptfoo 0.118.0 drops a configured 0 from the body, so its config also passes it
through), seed 0, max_tokens, concurrency, the assertion (``icontains`` the expected text: the case
passes when the answer holds it, case ignored), no cache, results persisted. Not equivalent: llmdock stores a
trace per case and computes a summary with confidence intervals, promptfoo prints its result table and writes
a JSON file (each tool's usual output); ROUGE is left out because promptfoo's ``rouge-n`` (js-rouge, no
stemming) and llmdock's ``rouge-l`` (rouge-score, Porter stemming) do not score alike. The answers both
clients got are compared case by case (temperature 0: they should be the same text); the pass rates must
then agree. Target (issue 14): llmdock (url) <= 0.5x promptfoo's wall time. Figures are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cpu_load import SummedLoad
from harness import FAKE_CONFIG, ROOT, llmdock_command, llmdock_server, make_rows, options, run_measured
from rich.console import Console
from rich.table import Table
from serve_figures import MODEL, NOISY_LOAD

PROMPTFOO_VERSION = "0.118.0"  # also in scripts/system-deps.sh
NODE_DIR = ROOT / "bench" / ".node"
TARGET = 0.5  # llmdock (url) wall time / promptfoo's
FAILED_TESTS_EXIT = 100  # promptfoo's exit code when it ran and some cases failed
PROMPTFOO_ENV = {
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "PROMPTFOO_DISABLE_UPDATE": "1",
}
console = Console()
if not console.is_terminal:
    console.width = max(console.width, 120)


@dataclass
class Client:
    """One tool: how to run it on a suite folder, how to read its answers back, and what it measured."""

    name: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # CPU seconds of the client's processes
    peak_mib: float = 0.0
    server_mib: float = 0.0
    load: SummedLoad = field(default_factory=SummedLoad)
    answers: dict[str, tuple[str, bool, bool]] = field(default_factory=dict)  # id -> (text, passed, errored)


# --- the files each tool reads ----------------------------------------------------------------------------


def write_inputs(folder: Path, rows: list[dict[str, Any]], url: str, args: Any) -> None:
    """The dataset, the two llmdock suites (url, in process) and the promptfoo config, for ``rows``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cases.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = f"assert:\n  - {{type: icontains}}\nmax_tokens: {args.max_tokens}\nseed: 0\n"
    if args.concurrency:  # 0: the tools' defaults, nothing said
        common += f"concurrency: {args.concurrency}\n"
    (folder / "url.yaml").write_text(
        f"name: promptfoo-compare\ndataset: cases.jsonl\ntargets:\n  - url: {url}/v1\n    model: {args.model}\n"
        f"    params: {{temperature: 0}}\n{common}"
    )
    (folder / "local.yaml").write_text(
        f"name: promptfoo-compare\ndataset: cases.jsonl\ntargets:\n  - model: {args.model}\n"
        f"    params: {{temperature: 0}}\n{common}"
    )
    provider = {
        "id": f"openai:chat:{args.model}",
        "config": {
            "apiBaseUrl": f"{url}/v1",
            "apiKey": "unused",
            "temperature": 0,
            "max_tokens": args.max_tokens,
            "seed": 0,
            # promptfoo 0.118.0 drops ``temperature: 0`` from the request (a falsy check; promptfoo#7322, fixed
            # in 0.120): passthrough puts it in the body, so the server does not sample at its default.
            "passthrough": {"temperature": 0},
        },
    }
    tests = [
        {
            "description": row["id"],
            "vars": {"input": row["input"]},
            "assert": [{"type": "icontains", "value": row["expected"]}],
        }
        for row in rows
    ]
    config = {"description": "promptfoo-compare", "prompts": ["{{input}}"], "providers": [provider]}
    (folder / "promptfooconfig.yaml").write_text(json.dumps({**config, "tests": tests}, indent=1))
    (folder / "client.yaml").write_text(model_config(args))


def promptfoo_bin() -> Path:
    exe = NODE_DIR / "node_modules" / ".bin" / "promptfoo"
    manifest = NODE_DIR / "node_modules" / "promptfoo" / "package.json"
    version = json.loads(manifest.read_text())["version"] if manifest.exists() else None
    if not exe.exists() or version != PROMPTFOO_VERSION:
        raise SystemExit(
            f"promptfoo {PROMPTFOO_VERSION} is not in {NODE_DIR} (found: {version}): "
            "run `bash scripts/system-deps.sh bench` (make bench does)"
        )
    return exe


# --- running a client -------------------------------------------------------------------------------------


def command(client: str, folder: Path, args: Any) -> tuple[list[str], dict[str, str]]:
    if client == "promptfoo":
        env = {**os.environ, **PROMPTFOO_ENV, "PROMPTFOO_CONFIG_DIR": str(folder / "promptfoo-home")}
        cmd = [str(promptfoo_bin()), "eval", "-c", "promptfooconfig.yaml", *concurrency_flag("-j", args)]
        return [*cmd, "--no-cache", "-o", "results.json"], env
    suite = "url.yaml" if client == "llmdock (url)" else "local.yaml"
    env = {**os.environ, "LLMDOCK_HOME": str(folder / f"home-{suite.split('.')[0]}")}
    cmd = llmdock_command("eval", "run", suite, *concurrency_flag("--concurrency", args), "-c", "client.yaml")
    return cmd, env


def concurrency_flag(flag: str, args: Any) -> list[str]:
    """``flag C`` at an equal concurrency; nothing (each tool's default) with ``--concurrency 0``."""
    return [flag, str(args.concurrency)] if args.concurrency else []


def read_answers(client: str, folder: Path, log: Path, env: dict[str, str]) -> dict[str, Any]:
    """case id -> (answer, passed, errored), from the run the client just stored."""
    if client == "promptfoo":
        out = json.loads((folder / "results.json").read_text())
        return {
            r["testCase"]["description"]: (
                (r.get("response") or {}).get("output") or "",
                bool(r["success"]),
                bool(r.get("error")) and not (r.get("response") or {}).get("output"),
            )
            for r in out["results"]["results"]
        }
    found = re.search(r"^run (\S+): llmdock eval show", log.read_text(), re.M)
    if found is None:
        raise SystemExit(f"{client}: no run id in {log}")
    export = llmdock_command("eval", "export", found.group(1), "-o", "export.jsonl", "-c", "client.yaml")
    subprocess.run(export, cwd=folder, env=env, check=True, capture_output=True)
    rows = [json.loads(line) for line in (folder / "export.jsonl").read_text().splitlines()]
    return {r["case_id"]: (r["output"], bool(r["passed"]), bool(r["error"])) for r in rows}


def run_client(client: Client, folder: Path, server_pid: int, args: Any) -> float:
    """One timed run of ``client`` in ``folder`` (which holds the inputs): its wall seconds."""
    cmd, env = command(client.name, folder, args)
    log = folder / f"{client.name.split()[0]}-{len(client.walls)}.log"
    with client.load.block():
        got = run_measured(cmd, env, cwd=folder, log=log, also={"server": server_pid})
    if got.code not in ((0, FAILED_TESTS_EXIT) if client.name == "promptfoo" else (0,)):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise SystemExit(f"{client.name} exited with {got.code}:\n{tail}")
    client.answers = read_answers(client.name, folder, log, env)
    client.walls.append(got.seconds)
    client.cpus.append(got.cpu_s)
    client.peak_mib = max(client.peak_mib, got.peak_mib["client"])
    if client.name != "llmdock (in process)":
        client.server_mib = max(client.server_mib, got.peak_mib["server"])
    return got.seconds


# --- the report -------------------------------------------------------------------------------------------


def report(clients: dict[str, Client], rounds: int, title: str) -> None:
    pf, url = clients["promptfoo"], clients["llmdock (url)"]
    table = Table(title=title)
    for column in (
        "tool",
        "wall (s)",
        "ratio to promptfoo",
        "client CPU (s)",
        "peak RSS (MiB)",
        "server peak RSS (MiB)",
        "passed",
        "errors",
        "same answer as llmdock (url)",
        "other load",
    ):
        table.add_column(column, justify="left" if column == "tool" else "right")
    for c in clients.values():
        ratio = statistics.median(a / b for a, b in zip(c.walls, pf.walls, strict=True))
        same = sum(c.answers.get(i, ("",))[0] == a[0] for i, a in url.answers.items())
        table.add_row(
            c.name,
            f"{statistics.median(c.walls):.1f}",
            f"{ratio:.3f}x",
            f"{statistics.median(c.cpus):.1f}",
            f"{c.peak_mib:.0f}",
            f"{c.server_mib:.0f}" if c.server_mib else "-",
            f"{sum(a[1] for a in c.answers.values())}/{len(c.answers)}",
            str(sum(a[2] for a in c.answers.values())),
            f"{same}/{len(url.answers)}",
            f"{c.load.share():.0%}",
        )
    console.print(table)
    ratio = statistics.median(a / b for a, b in zip(url.walls, pf.walls, strict=True))
    verdict = "meets" if ratio <= TARGET else "misses"
    console.print(
        f"llmdock (url) / promptfoo wall time: {ratio:.3f}x over {rounds} round(s), target <= {TARGET}x: {verdict}"
    )
    differ = [i for i, a in url.answers.items() if pf.answers.get(i, ("",))[0] != a[0]]
    if differ:
        i = differ[0]
        console.print(
            f"{len(differ)} answer(s) differ between the two clients, the first {i}:", highlight=False
        )
        console.print(f"  llmdock   {url.answers[i][0]!r}\n  promptfoo {pf.answers[i][0]!r}", highlight=False)
    if max(c.load.share() for c in clients.values()) > NOISY_LOAD:
        console.print(
            f"[yellow]other processes took over {NOISY_LOAD:.0%} of the CPUs: the figures are disturbed[/]"
        )


# --- main -------------------------------------------------------------------------------------------------


def model_config(args: Any) -> str:
    """llmdock.yaml of the server and of the in-process client: the real model, or the fake backend."""
    if args.model == "fake":
        return FAKE_CONFIG + "cache: {exact: false}\n"
    return f"log_level: warning\nn_threads: {args.threads}\ncache: {{exact: false}}\n"


def warm_server(url: str, args: Any) -> None:
    body = {
        "model": args.model,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": args.max_tokens,
    }
    httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300).raise_for_status()


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--cases", type=int, default=200, help="cases in the suite [200]")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every answer [32]")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="cases at once, both tools; 0: each tool's default [4]"
    )
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads of the model [2]")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs of each tool, order rotating [1]")
    parser.add_argument("--seed", type=int, default=14, help="shuffles the sentences [14]")
    parser.add_argument(
        "--model",
        choices=(MODEL, "fake"),
        default=MODEL,
        help=f"the served model [{MODEL}]; fake answers at once, so the clients' own time is what is left",
    )
    parser.add_argument("--no-in-process", action="store_true", help="leave out llmdock's in-process row")
    args = parser.parse_args()
    promptfoo_bin()

    rows, where, distinct = make_rows(args.cases, args.seed)
    console.print(f"{len(rows)} cases from {distinct} sentences of {where}")
    names = ["llmdock (url)", "promptfoo"] + ([] if args.no_in_process else ["llmdock (in process)"])
    clients = {name: Client(name) for name in names}
    with (
        tempfile.TemporaryDirectory(prefix="llmdock-promptfoo-") as tmp,
        llmdock_server(Path(tmp) / "server", model_config(args), timeout_s=300) as (url, server),
    ):
        warm_server(url, args)
        write_inputs(Path(tmp) / "warmup", rows[:4], url, args)
        for name in names:
            run_client(Client(name), Path(tmp) / "warmup", server.proc.pid, args)
        for k in range(args.rounds):
            folder = Path(tmp) / f"round{k}"
            write_inputs(folder, rows, url, args)
            took = []
            for name in names[k % len(names) :] + names[: k % len(names)]:
                seconds = run_client(clients[name], folder, server.proc.pid, args)
                took.append(f"{name} {seconds:.1f} s")
            console.log(f"round {k + 1}/{args.rounds}: " + ", ".join(took))
    report(
        clients,
        args.rounds,
        f"{len(rows)} cases, concurrency {args.concurrency or 'of each tool (default)'}, "
        f"max_tokens {args.max_tokens}, "
        f"{args.threads} threads, promptfoo {PROMPTFOO_VERSION} on Node {node_version()}",
    )


def node_version() -> str:
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()


if __name__ == "__main__":
    main()
