"""Schema-driven fuzzing of every HTTP route of a real ``llmdock serve``, past authentication (schemathesis).

A fake-backend server (a stand-in upstream: the point is the HTTP edge) with an admin key, so auth is on and
the admin routes are reached past it. For each operation of the server's own /openapi.json, schemathesis
generates cases, half valid and half invalid for the schema (bodies, query and path parameters), sent with
the admin key. Each answer is checked: no 5xx, an answer within --timeout seconds (no hang), every 4xx an
OpenAI-shaped error ``{"error": {"message", "type", "param", "code"}}``. Prints the cases, the answers by
status class and each failure with what reproduces it.

Usage: .venv/bin/python bench/fuzz_api.py [--cases 3000] [--timeout 10] [--seed 15]
Target (issue 15): 0 responses 5xx, 0 hangs, every 4xx OpenAI-shaped.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from harness import FAKE_CONFIG, fake_server, options
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from llmdock.gateway.schemas import ErrorBody

CONFIG = FAKE_CONFIG + "  fake-embed: {backend: fake, task: embedding}\n"


@dataclass
class Figures:
    cases: int = 0
    by_class: Counter[str] = field(default_factory=Counter)  # "2xx", "4xx", "5xx", "hang", "no answer"
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per operation
    ungenerated: list[str] = field(default_factory=list)  # operation (mode) with no case to generate

    def record(self, what: str, failure: str | None) -> None:
        self.cases += 1
        self.by_class[what] += 1
        if failure is not None:
            self.failures.append(failure)


def admin_key(home: Path) -> str:
    """An admin key in ``home``'s store (its existence turns auth on)."""
    from llmdock.auth.keys import Directory, load_secret
    from llmdock.config import load_settings
    from llmdock.store import Store
    from llmdock.store.audit import Actor

    (home / "llmdock.yaml").write_text(CONFIG)
    conf = load_settings(home / "llmdock.yaml", home=home)
    directory = Directory(Store(conf.resolved_database_url()), load_secret(conf))
    directory.create_user("fuzzer", Actor("bench", "fuzz_api"), role="admin")
    key, _ = directory.create_key("fuzzer", Actor("bench", "fuzz_api"))
    return key


def problem(status: int, body: bytes, content_type: str) -> str | None:
    """Why an answer breaks the contract (a 5xx, a 4xx that is not an OpenAI error), or None."""
    if status >= 500:
        return f"{status}: {body[:300]!r}"
    if status < 400:
        return None
    if not content_type.startswith("application/json"):
        return f"{status} as {content_type!r}, not an OpenAI error: {body[:300]!r}"
    try:
        ErrorBody.model_validate_json(body)
    except ValueError:
        return f"{status} is not an OpenAI error: {body[:300]!r}"
    return None


def check(case: Any, url: str, headers: dict[str, str], timeout: float, figures: Figures) -> None:
    """Send one case and record what came back."""
    where = f"{case.method} {case.formatted_path}"
    try:
        resp = case.call(base_url=url, headers=headers, timeout=timeout)
    except requests.Timeout:
        figures.record("hang", f"{where}: no answer within {timeout} s\n    {case.as_curl_command(headers)}")
        return
    except requests.ConnectionError as exc:
        figures.record("no answer", f"{where}: {exc}")
        return
    status = resp.status_code
    content_type = (resp.headers.get("content-type") or [""])[0]  # schemathesis: a list per header
    bad = problem(status, resp.content, content_type)
    failure = f"{where} -> {bad}\n    {case.as_curl_command(headers)}" if bad else None
    figures.record(f"{status // 100}xx", failure)


def modes_of(operation: Any) -> list[GenerationMode]:
    """Valid cases always; invalid ones where schemathesis can make them.

    A path parameter is any string, so an operation with neither a body nor a query has no invalid case;
    and schemathesis 4.10 finds none for a body under a path parameter either (it gives up after some
    seconds of trying, on every such operation).
    """
    if (len(operation.body) or len(operation.query)) and not len(operation.path_parameters):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def fuzz(
    url: str,
    key: str,
    cases: int,
    timeout: float = 10.0,
    seed_value: int = 15,
    progress: Callable[[int], None] | None = None,
) -> Figures:
    """About ``cases`` generated requests over every operation of ``url``'s OpenAPI document."""
    headers = {"authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=headers, timeout=30)
    operations = [r.ok() for r in schema.get_all_operations() if isinstance(r, Ok)]
    figures = Figures()
    plans = [(operation, modes_of(operation)) for operation in operations]
    per_mode = max(1, -(-cases // sum(len(modes) for _, modes in plans)))  # rounded up
    for operation, modes in plans:
        started = time.perf_counter()
        for mode in modes:
            before = figures.cases

            @seed(seed_value)
            @settings(
                max_examples=per_mode,
                deadline=None,
                database=None,
                derandomize=False,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                check(case, url, headers, timeout, figures)

            try:
                run()
            except Unsatisfiable:  # e.g. no invalid request exists for a GET without parameters
                figures.ungenerated.append(f"{operation.label} ({mode.value})")
            if progress is not None:
                progress(figures.cases - before)
        figures.seconds[operation.label] = time.perf_counter() - started
    return figures


def report(figures: Figures, console: Console) -> None:
    table = Table(title=f"schemathesis {schemathesis.__version__}: {figures.cases} cases, admin key")
    table.add_column("answers")
    table.add_column("cases", justify="right")
    for what in ("2xx", "4xx", "5xx", "hang", "no answer"):
        table.add_row(what, str(figures.by_class.get(what, 0)))
    table.add_row("failures", str(len(figures.failures)))
    console.print(table)
    if figures.ungenerated:
        console.print(f"no case could be generated for: {', '.join(figures.ungenerated)}")
    slowest = sorted(figures.seconds.items(), key=lambda kv: -kv[1])[:3]
    console.print("slowest operations to fuzz: " + ", ".join(f"{k} {v:.1f} s" for k, v in slowest))
    for failure in figures.failures[:20]:
        console.print(f"[red]FAIL[/] {failure}", markup=True, highlight=False)


def main() -> int:
    parser = options(__doc__ or "")
    parser.add_argument("--cases", type=int, default=3000, help="cases in all (spread over the operations)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request is a hang")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    console = Console()
    home = Path(tempfile.mkdtemp(prefix="llmdock-fuzz-"))
    key = admin_key(home)
    with fake_server(home, CONFIG) as url, Progress(console=console) as bar:
        task = bar.add_task("fuzzing", total=args.cases)
        figures = fuzz(url, key, args.cases, args.timeout, args.seed, lambda n: bar.advance(task, n))
    report(figures, console)
    if figures.failures:
        console.print(f"the server's log: {home / 'server.log'}")
        return 1
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
