"""GET /metrics of ``llmdock serve --workers 2``: every worker's requests, whichever worker answers the scrape."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import start_server, stop_server

pytestmark = pytest.mark.server
CONFIG = (
    "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
    "models:\n  fake: {backend: fake}\nmetrics: {flush_interval_s: 0.2}\n"
)
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "count me"}], "max_tokens": 4}


def requests_counted(text: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "llmdock_requests_total" and s.labels["model"] == "fake"
    )


def test_every_scrape_reports_both_workers_requests(tmp_path: Path) -> None:
    (tmp_path / "llmdock.yaml").write_text(CONFIG)
    server = start_server(tmp_path, "--workers", "2", "--config", str(tmp_path / "llmdock.yaml"))
    try:
        pids: set[int] = set()
        sent = 0

        def one() -> int:
            with httpx.Client(base_url=server.url, timeout=30) as http:  # a new connection each time
                assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
                return int(http.get("/health").json()["pid"])

        deadline = time.monotonic() + 120
        # Eight at once, so an idle worker is waiting in accept() whenever a connection comes (a second worker
        # still starting on a loaded machine gets its share once it is up).
        with ThreadPoolExecutor(8) as pool:
            while (len(pids) < 2 or sent < 40) and time.monotonic() < deadline:
                pids.update(pool.map(lambda _: one(), range(8)))
                sent += 8
        assert len(pids) == 2, "both workers should have answered"
        run_dirs = list((tmp_path / "prometheus").iterdir())
        assert len(run_dirs) == 1
        scrapes: list[tuple[int, float]] = []
        time.sleep(0.6)  # each worker publishes what it counted every 0.2 s
        for _ in range(8):
            with httpx.Client(base_url=server.url, timeout=10) as http:
                resp = http.get("/metrics")
                assert resp.status_code == 200
                scrapes.append((http.get("/health").json()["pid"], requests_counted(resp.text)))
        assert all(count == sent for _, count in scrapes), scrapes
        counter_files = {p.name for p in run_dirs[0].glob("counter_*.db")}
        assert len(counter_files) >= 2, counter_files
    finally:
        stop_server(server)
    assert not (tmp_path / "prometheus" / str(server.proc.pid)).exists(), "the run's directory is removed"
