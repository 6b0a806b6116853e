"""What access control adds per request: authentication + authorization + per-key and per-team rate limits.

Two ``llmdock serve`` processes on the fake backend (a stand-in upstream, named as such: the point is what
the gateway adds), one with auth off and one with an admin key and a service key whose key and team have
rpm/tpm limits high enough never to refuse. wrk drives each at one keep-alive connection, in alternating
rounds (the machine drifts); printed side by side with the difference of the medians. Also: the in-process
cost of one authenticate + authorize + admit with the key cached, and PII redaction of a 1,000-character
prompt when the privacy module is installed.

Usage: .venv/bin/python bench/auth_overhead.py [--duration 5] [--rounds 3]
Targets (issue 5): auth + limits <= 0.2 ms P50; redaction of a 1,000-character prompt <= 5 ms P50.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from harness import FAKE_CONFIG, fake_server, options, percentiles, wrk
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

BODY = '{"model":"fake","messages":[{"role":"user","content":"hello"}],"max_tokens":8}'


def make_keys(home: Path) -> str:
    """An admin key (turns auth on) and a limited service key in a limited team; returns the service key."""
    from llmdock.auth.keys import Directory, load_secret
    from llmdock.config import load_settings
    from llmdock.store import Store
    from llmdock.store.audit import Actor

    (home / "llmdock.yaml").write_text(FAKE_CONFIG)
    settings = load_settings(home / "llmdock.yaml", home=home)
    d = Directory(Store(settings.resolved_database_url()), load_secret(settings))
    actor = Actor("bench", "bench")
    d.create_user("root", actor, role="admin")
    d.create_key("root", actor)
    d.create_team("bench-team", actor, rpm=10_000_000, tpm=1_000_000_000)
    d.create_user("svc", actor, role="service", kind="service", team="bench-team")
    key, _ = d.create_key("svc", actor, rpm=10_000_000, tpm=1_000_000_000)
    return key


async def in_process(n: int) -> tuple[float, float]:
    """P50/P99 µs of authenticate + authorize + admit for a cached key with key and team limits."""
    from llmdock.auth.service import AuthService
    from llmdock.config import load_settings
    from llmdock.store import Store

    home = Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    key = make_keys(home)
    settings = load_settings(home / "llmdock.yaml", home=home)
    service = AuthService(settings, Store(settings.resolved_database_url()), None)
    assert service.active()
    await service.authenticate("Bearer " + key, "bench")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = await service.authenticate("Bearer " + key, "bench")
        service.authorize(p, "inference")
        await service.admit(p)
        times.append((time.perf_counter() - t0) * 1e6)
    return percentiles(times)


def redaction_row() -> tuple[str, str, str, str] | None:
    try:
        from pii_cases import measure_redaction
    except ImportError:
        return None
    result = measure_redaction(200)
    return (
        "PII redaction of a 1,000-character prompt",
        f"{result['p50_ms']:.2f} / {result['p99_ms']:.2f}",
        "",
        "≤ 5 ms P50",
    )


def main() -> None:
    parser = options(__doc__)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    args = parser.parse_args()
    off: list[tuple[float, float, float]] = []
    on: list[tuple[float, float, float]] = []
    home_on = Path(tempfile.mkdtemp(prefix="llmdock-bench-"))
    key = make_keys(home_on)
    headers = {"Authorization": f"Bearer {key}"}
    with fake_server() as url_off, fake_server(home_on) as url_on, Progress() as progress:
        task = progress.add_task("wrk, auth off / on", total=2 * args.rounds + 2)
        wrk(url_off + "/v1/chat/completions", 1, BODY)  # warm up both
        wrk(url_on + "/v1/chat/completions", 1, BODY, headers)
        progress.advance(task, 2)
        for _ in range(args.rounds):
            off.append(wrk(url_off + "/v1/chat/completions", args.duration, BODY))
            progress.advance(task)
            on.append(wrk(url_on + "/v1/chat/completions", args.duration, BODY, headers))
            progress.advance(task)
    p50_off = statistics.median(r[1] for r in off)
    p50_on = statistics.median(r[1] for r in on)
    p99_off = statistics.median(r[2] for r in off)
    p99_on = statistics.median(r[2] for r in on)
    micro50, micro99 = asyncio.run(in_process(20_000))
    table = Table(
        "measurement", "P50 / P99 ms", "requests/s", "target", title="llmdock access-control overhead"
    )
    table.add_row(
        "auth off (fake backend, c=1)",
        f"{p50_off:.3f} / {p99_off:.3f}",
        f"{statistics.median(r[0] for r in off):,.0f}",
        "",
    )
    table.add_row(
        "auth on: key + role + key/team rpm,tpm",
        f"{p50_on:.3f} / {p99_on:.3f}",
        f"{statistics.median(r[0] for r in on):,.0f}",
        "",
    )
    table.add_row(
        "added by auth + limits (HTTP, median of rounds)",
        f"{p50_on - p50_off:+.3f} / {p99_on - p99_off:+.3f}",
        "",
        "≤ 0.2 ms P50",
    )
    table.add_row(
        "in process: authenticate + authorize + admit", f"{micro50 / 1000:.4f} / {micro99 / 1000:.4f}", "", ""
    )
    row = redaction_row()
    if row is None:
        table.add_row("PII redaction", "llmdock.privacy is not installed", "", "≤ 5 ms P50")
    else:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
