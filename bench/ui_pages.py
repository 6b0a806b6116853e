"""Each dashboard page's server time with N traces in the store (issue 23 asks for 1,000,000; target P95
<= 150 ms).

Fills a fresh SQLite store (or --postgres, a throwaway PostgreSQL; or --database-url) with N traces spread
over the last 7 days — 4 models (one at 1 %), 2 % errors (half of them guard blocks), 5 teams (one at 0.5 %),
20 keys, lognormal latencies, a rare word in 0.1 % of answers, a prompt template on 1 %, an A/B experiment on
2 %, a guard detector's span flagging on 1 %, spans of a real pipeline — through the trace writer's own insert
(store.traces.write_traces), and a registered model with lineage, two evaluation runs and a scan, alert
firings; then asks every page through the gateway app in process (Starlette's TestClient: no sockets; the
time is the app's) --repeat times: the list unfiltered and under each filter, page 2 and a deep page (keyset
cursors), a team's view (a viewer's session), a trace, the prompts, models, evaluations (a comparison, a
scan), the experiment, usage, keys, the monitoring charts and alerts. Prints each page's P50/P95 in ms, its
CPU time (the process's, SQLite's work included: load barely changes it) and the plan of the list's queries.

    python bench/ui_pages.py --traces 200000
    python bench/ui_pages.py --postgres --traces 200000
    python bench/ui_pages.py --home DIR [--database-url URL]   # measure again what a run left
    python bench/ui_pages.py --postgres-dir PGDIR --home DIR    # a PostgreSQL kept in PGDIR between runs
"""

from __future__ import annotations

import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness import options, pct
from rich.progress import Progress
from sqlalchemy import func, select

from llmdock.config import ModelConfig, Settings
from llmdock.registry import ModelRegistry
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from llmdock.store.models import Trace
from llmdock.store.trace_records import SpanRecord, TraceRecord
from llmdock.store.traces import write_traces

ACTOR = Actor("bench", "ui_pages")
MODELS = ["smollm2"] * 60 + ["gemma3-270m"] * 30 + ["upstream-gpt"] * 9 + ["rare-model"]
WORDS = "the answer is a short sentence about paris rivers models tokens latency cache guard".split()
STAGES = ["preprocess", "guard_in", "cache", "generate", "guard_out", "postprocess"]


def fill(settings: Settings, n: int, teams: list[str], seed: int) -> None:
    from llmdock.store import Store

    store = Store(settings.resolved_database_url())
    rng = random.Random(seed)
    now = datetime.now(UTC)
    span_ms = 7 * 24 * 3600 * 1000 / max(n, 1)
    batch = 2000
    with Progress() as progress:
        task = progress.add_task(f"writing {n:,} traces", total=n)
        for start in range(0, n, batch):
            records = []
            for i in range(start, min(n, start + batch)):
                at = now - timedelta(milliseconds=(n - i) * span_ms)
                ms = rng.lognormvariate(5.5, 0.8)
                words = rng.choices(WORDS, k=12) + (["zanzibar"] if rng.random() < 0.001 else [])
                team = teams[-1] if rng.random() < 0.005 else rng.choice(teams[:-1])
                spans = [
                    SpanRecord(s, at + timedelta(milliseconds=k), ms / len(STAGES))
                    for k, s in enumerate(STAGES)
                ]
                flagged = rng.random() < 0.01
                spans.append(
                    SpanRecord("guard_in.injection", at, 1.0, "ok", {"score": 0.5, "flagged": flagged})
                )
                failed, roll = rng.random() < 0.02, rng.random()
                attributes = (
                    {"llmdock.prompt_template": "greet", "llmdock.prompt_version": 1} if roll < 0.01 else {}
                )
                if 0.5 < roll < 0.52:
                    attributes = {"llmdock.experiment": "tone", "llmdock.experiment_variant": "ab"[i % 2]}
                records.append(
                    TraceRecord(
                        id=f"{i:032x}",
                        created_at=at,
                        operation="chat",
                        model=rng.choice(MODELS),
                        status="error" if failed else "ok",
                        error=("content_policy: blocked" if i % 2 else "backend_error: down")
                        if failed
                        else "",
                        attributes=attributes,
                        api_key_id=f"key{rng.randrange(20):02d}",
                        duration_ms=ms,
                        prompt_tokens=rng.randint(10, 200),
                        completion_tokens=rng.randint(5, 100),
                        input={"messages": [{"role": "user", "content": " ".join(rng.choices(WORDS, k=10))}]},
                        output=" ".join(words),
                        team_id=team,
                        spans=spans,
                    )
                )
            write_traces(store, records, yield_gil=False)
            progress.advance(task, len(records))
    store.close()


def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL (tests/pgserver.py)")
    parser.add_argument(
        "--postgres-dir",
        default="",
        help="a PostgreSQL cluster kept in DIR between runs (made there on the first; started, then stopped)",
    )
    parser.add_argument(
        "--home", help="the home to fill, or to measure again if a run filled it already (no new traces)"
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="the store's database (e.g. a PostgreSQL kept between runs) [the home's SQLite]",
    )
    args = parser.parse_args()
    pg = kept_postgres(Path(args.postgres_dir)) if args.postgres_dir else None
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.pgserver import start_pg_server

        pg = start_pg_server()

    from fastapi.testclient import TestClient

    from llmdock.gateway import create_app

    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="ui-pages-"))
    settings = Settings(
        home=home,
        include_builtin_models=False,
        models={"fake": ModelConfig(backend="fake")},
        default_model="fake",
        default_embedding_model="",
        database_url=pg.url if pg else args.database_url,
    )
    runtime = Runtime(settings)
    assert runtime.store is not None
    with runtime.store.session() as s:
        stored = int(s.scalar(select(func.count()).select_from(Trace)) or 0)
    if stored:  # a store an earlier run filled (stopped while writing, say): measure what it holds
        admin_key, viewer_key, tiny_key = keys_again(runtime)
        args.traces = stored
    else:
        admin_key, viewer_key, tiny_key, teams = people(runtime)
        t0 = time.perf_counter()
        fill(settings, args.traces, teams, args.seed)
        print(f"{args.traces:,} traces written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not ModelRegistry(runtime.store, home).names():
        beside_the_traces(runtime, home)
    drift_points(runtime)
    with TestClient(create_app(runtime)) as client:  # one event loop for every request, as a server has
        pages = measure(client, admin_key, viewer_key, tiny_key, args.repeat)
        explain(client, runtime, admin_key)
    kind = "SQLite" if runtime.store.engine.dialect.name == "sqlite" else "PostgreSQL"
    print(f"\n{args.traces:,} traces in {kind}; {args.repeat} requests per page; server and CPU time in ms")
    print(f"{'page':<34} {'P50':>8} {'P95':>8} {'CPU P50':>8} {'rows':>6} {'KiB read':>9}")
    for name, (times, cpu, rows, kib) in pages.items():
        line = f"{pct(times, 50):>8.1f} {pct(times, 95):>8.1f} {pct(cpu, 50):>8.1f} {rows:>6} {pct(kib, 50):>9.0f}"
        print(f"{name:<34} {line}")
    if pg is not None:
        runtime.store.close()
        if args.postgres_dir:
            pg.stop()
        else:
            pg.destroy()


def kept_postgres(where: Path) -> Any:
    """A PostgreSQL cluster in ``where`` (tests/pgserver.py's settings) that outlives the run: made on the first
    run, started again on the next ones (the 1,000,000 traces are written once)."""
    import atexit
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.pgserver import PgServer

    pg = PgServer()
    atexit.unregister(pg.destroy)
    shutil.rmtree(pg.base)
    made = (where / "data").is_dir()
    where.mkdir(parents=True, exist_ok=True)
    pg.base, pg.datadir, pg.logfile = where, where / "data", where / "server.log"
    if not made:
        pg.init()
        with (pg.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("shared_buffers = 1GB\n")  # the default 128 MB holds a tenth of 1M traces' pages
    pg._initialised = True
    pg.start()
    atexit.register(pg.stop)
    if not made:
        pg.create_database(pg.dbname)
    return pg


def people(runtime: Runtime) -> tuple[str, str, str, list[str]]:
    """Five teams, an admin, a viewer of a 20 % team and one of the 0.5 % team (their keys), a prompt."""
    from llmdock.prompts import PromptRegistry

    d = runtime.auth.directory
    assert d is not None
    teams = [d.create_team(f"team{i}", ACTOR).id for i in range(5)]
    d.create_user("root", ACTOR, role="admin")
    d.create_user("vera", ACTOR, role="viewer", team="team0")
    d.create_user("tess", ACTOR, role="viewer", team="team4")  # the team with 0.5 % of the traces
    registry = PromptRegistry(runtime.store)  # type: ignore[arg-type]
    for v in range(5):
        registry.create("greet", ACTOR, kind="text", template=f"Hello {{{{ name }}}} v{v}")
    return (*keys_again(runtime), teams)


def keys_again(runtime: Runtime) -> tuple[str, str, str]:
    d = runtime.auth.directory
    assert d is not None
    return d.create_key("root", ACTOR)[0], d.create_key("vera", ACTOR)[0], d.create_key("tess", ACTOR)[0]


def beside_the_traces(runtime: object, home: Path) -> None:
    """A model with two versions (one tuned from the other), two evaluation runs of 200 cases and a scan
    report, the A/B experiment the traces were assigned to, 40 alert firings."""
    from llmdock.evaluate.case import Case, CaseResult, Output, Score
    from llmdock.evaluate.results import create_run, finish_run, save_result
    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.spec import ExperimentSpec, VariantSpec
    from llmdock.scan.stored import save_report
    from llmdock.store.monitor_rows import AlertFiring

    store = runtime.store  # type: ignore[attr-defined]
    weights = home / "weights.gguf"
    weights.write_bytes(b"x" * 4096)
    registry = ModelRegistry(store, home)
    registry.register("tuned", weights, ACTOR, progress=False)
    lineage = {"base_model_version": "tuned/1", "training_run": "ft-1", "dataset": "support"}
    registry.register("tuned", weights, ACTOR, progress=False, lineage=lineage)
    rng = random.Random(3)
    for run in ("benchrun0000000a", "benchrun0000000b"):
        create_run(store, run, "capitals", "suite.yaml", "0" * 64, {}, 200, "bench")
        for i in range(200):
            passed = rng.random() < 0.8
            result = CaseResult(
                "fake",
                f"c{i}",
                0,
                Output("x", 10.0),
                {"icontains": Score(float(passed), passed)},
                float(passed),
                passed,
            )
            save_result(store, run, Case(id=f"c{i}", input=f"q {i}", expected="x"), result)
        finish_run(store, run, "done")
    save_report(store, "benchrun0000000b", {"run_id": "benchrun0000000b", "findings": [], "tallies": []})
    variants = [VariantSpec("a", model="smollm2", weight=50), VariantSpec("b", model="smollm2", weight=50)]
    spec = ExperimentSpec(
        "tone", variants, match={"model": "smollm2"}, starts_at=datetime.now(UTC) - timedelta(days=8)
    )
    ExperimentBook(store).create(spec, ACTOR, {"smollm2"})
    now = datetime.now(UTC)
    with store.session() as s, s.begin():
        s.add_all(
            AlertFiring(
                rule=f"rule{i % 4}", model="smollm2", metric="p95_ms", condition="threshold", value=900.0 + i,
                expected="> 800", message="slow", fired_at=now - timedelta(hours=i), last_seen_at=now,
            )
            for i in range(40)
        )  # fmt: skip


def drift_points(runtime: object) -> None:
    """30 days of daily drift points for each model, 12 statistics each (as the ``monitor.drift_days`` step
    keeps them; the values are made up: the bench measures the pages, not the tests), unless kept already."""
    from llmdock.store.ui_rows import UiDriftDay

    store = runtime.store  # type: ignore[attr-defined]
    with store.session() as s:
        if s.scalar(select(func.count()).select_from(UiDriftDay)):
            return
    rng, now = random.Random(5), datetime.now(UTC)
    statistics = [f"statistic {i}" for i in range(12)]
    rows = []
    for model in sorted(set(MODELS)):
        for back in range(30, 0, -1):
            day = (now - timedelta(days=back)).strftime("%Y-%m-%d")
            for name in statistics:
                p = rng.random() ** 3
                rows.append(
                    UiDriftDay(
                        model=model, day=day, statistic=name, test="Kolmogorov-Smirnov", value=rng.random(),
                        p_value=p, adjusted_p=min(1.0, p * 6), drifted=p * 6 < 0.05, reference="median 12",
                        current="median 14", traces=1000, computed_at=now,
                    )
                )  # fmt: skip
    with store.session() as s, s.begin():
        s.add_all(rows)


def measure(
    client: object, admin_key: str, viewer_key: str, tiny_key: str, repeat: int
) -> dict[str, Timings]:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)

    sign_in(client, admin_key)
    first = client.get("/ui/traces").text
    page2 = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    trace_id = re.search(r'href="/ui/traces/(\w+)"', first).group(1)  # type: ignore[union-attr]
    deep = client.get(
        "/ui/traces?until=" + (datetime.now(UTC) - timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%S")
    )
    deep_next = re.search(r'rel="next" href="([^"]+)"', deep.text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    deep_next = re.sub(r"until=[^&]+&?", "", deep_next)  # the cursor alone: a page six days back
    day = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H")
    admin_pages = {
        "traces": "/ui/traces",
        "traces page 2 (cursor)": page2,
        "traces 6 days back (cursor)": deep_next,
        "traces model (60 %)": "/ui/traces?model=smollm2",
        "traces model (1 %)": "/ui/traces?model=rare-model",
        "traces status=error (2 %)": "/ui/traces?status=error",
        "traces min_ms=2000 (~1.5 %)": "/ui/traces?min_ms=2000",
        "traces one hour, 3 days back": f"/ui/traces?since={day}:00:00&until={day}:59:59",
        "traces text (common word)": "/ui/traces?text=paris",
        "traces text (0.1 % of rows)": "/ui/traces?text=zanzibar",
        "trace page": f"/ui/traces/{trace_id}",
        "prompts": "/ui/prompts",
        "prompt versions": "/ui/prompts/greet",
        "prompt diff": "/ui/prompts/greet/diff?a=1&b=5",
        "monitoring 24h": "/ui/monitoring?period=24h",
        "monitoring 7d": "/ui/monitoring?period=7d",
        "monitoring drift chart data (30 d)": "/ui/monitoring/drift.json?model=smollm2",
        "traces prompt (1 %)": "/ui/traces?prompt=greet",
        "traces guard=blocked (1 %)": "/ui/traces?guard=blocked",
        "traces guard=flagged (1 %)": "/ui/traces?guard=flagged",
        "models": "/ui/models",
        "model versions + lineage": "/ui/models/tuned",
        "evaluations": "/ui/evaluations",
        "evaluation compare (200 cases)": "/ui/evaluations/compare?a=benchrun0000000a&b=benchrun0000000b",
        "scan findings": "/ui/evaluations/benchrun0000000b/scan",
        "experiments": "/ui/experiments",
        "experiment (2 % of traces)": "/ui/experiments/tone",
        "usage 7d": "/ui/usage?period=7d",
        "usage 30d": "/ui/usage?period=30d",
        "keys": "/ui/keys",
    }
    cold = time.perf_counter()
    client.get("/ui/usage?period=30d")  # the first view keeps the month's closed hours (monitor_hours)
    print(f"usage 30d, first view (keeps the closed hours): {(time.perf_counter() - cold) * 1000:.0f} ms")
    out = {name: timed(client, url, repeat) for name, url in admin_pages.items()}
    sign_in(client, viewer_key)
    out["traces, team view (viewer)"] = timed(client, "/ui/traces", repeat)
    out["monitoring 24h, team (viewer)"] = timed(client, "/ui/monitoring?period=24h", repeat)
    out["drift chart data, team (viewer)"] = timed(client, "/ui/monitoring/drift.json?model=smollm2", repeat)
    out["usage 7d, team (viewer)"] = timed(client, "/ui/usage?period=7d", repeat)
    sign_in(client, tiny_key)
    out["traces, team of 0.5 % (viewer)"] = timed(client, "/ui/traces", repeat)
    return out


def sign_in(client: object, key: str) -> None:
    client.cookies.clear()  # type: ignore[attr-defined]
    form = client.get("/ui/login").text  # type: ignore[attr-defined]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    assert client.post("/ui/login", data={"key": key, "csrf": csrf}).status_code == 200  # type: ignore[attr-defined]


def read_bytes() -> int:
    """The bytes this process has read through system calls (``rchar``): on SQLite, the pages it read that its
    own page cache (2 MB) did not hold, from the OS's cache or the disk; on PostgreSQL, the results over the
    socket. Load does not change it."""
    with open("/proc/self/io", encoding="ascii") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])


Timings = tuple[list[float], list[float], int, list[float]]  # ms, CPU ms, table rows shown, KiB read


def timed(client: object, url: str, repeat: int) -> Timings:
    """``repeat`` timed GETs of ``url`` after one untimed (warm caches, as a user clicking around has)."""
    client.get(url)  # type: ignore[attr-defined]
    times, cpu, rows, kib = [], [], 0, []
    for _ in range(repeat):
        t, c, r = time.perf_counter(), time.process_time(), read_bytes()
        resp = client.get(url)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        kib.append((read_bytes() - r) / 1024)
        assert resp.status_code == 200, (url, resp.status_code, resp.text[-300:])
        rows = resp.text.count("<tr>")
    print(
        f"  {url[:60]:<60} P50 {pct(times, 50):8.1f}  P95 {pct(times, 95):8.1f}", file=sys.stderr, flush=True
    )
    return times, cpu, rows, kib


PLANNED = {
    "traces": "/ui/traces",
    "traces model (1 %)": "/ui/traces?model=rare-model",
    "traces status=error": "/ui/traces?status=error",
    "traces prompt": "/ui/traces?prompt=greet",
    "traces guard=flagged": "/ui/traces?guard=flagged",
    "experiment": "/ui/experiments/tone",
    "usage 30d": "/ui/usage?period=30d",
    "monitoring 7d": "/ui/monitoring?period=7d",
}


def explain(client: object, runtime: object, admin_key: str) -> None:
    """The plan the database picks for each query on ``traces`` that these pages send (captured as sent,
    with their parameters): which index serves them."""
    from sqlalchemy import event

    engine = runtime.store.engine  # type: ignore[attr-defined]
    sqlite = engine.dialect.name == "sqlite"
    seen: list[tuple[str, object]] = []

    def heard(
        conn: object, cursor: object, statement: str, params: object, context: object, many: bool
    ) -> None:
        if re.search(r"\bFROM (traces|usage_hours)\b", statement) and "EXPLAIN" not in statement:
            seen.append((statement, params))

    sign_in(client, admin_key)
    print(f"\nquery plans ({'SQLite EXPLAIN QUERY PLAN' if sqlite else 'PostgreSQL EXPLAIN'}):")
    for name, url in PLANNED.items():
        event.listen(engine, "before_cursor_execute", heard)
        try:
            client.get(url)  # type: ignore[attr-defined]
        finally:
            event.remove(engine, "before_cursor_execute", heard)
        with engine.connect() as conn:
            for statement, params in seen:
                print(f"  {name:<22} {planned(conn, statement, params, sqlite)}")
        seen.clear()


def planned(conn: Any, statement: str, params: object, sqlite: bool) -> str:
    """The plan of one statement, and what running it read: on SQLite the KiB read from outside its page cache
    (``read_bytes``), on PostgreSQL the buffers (EXPLAIN ANALYZE BUFFERS: 8 KiB pages, hit in shared buffers or
    read) and the rows the scan returned."""
    if sqlite:
        plan = [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]
        before = read_bytes()
        rows = len(conn.exec_driver_sql(statement, params).all())
        return f"{' / '.join(plan[:3])}  [{rows} rows out, {(read_bytes() - before) / 1024:.0f} KiB read]"
    lines = [
        str(r[0]).strip() for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
    ]
    keep = ("Index", "Scan", "Buffers", "Sort", "Aggregate")
    return " / ".join(ln for ln in lines if any(k in ln for k in keep))[:600]


if __name__ == "__main__":
    main()
