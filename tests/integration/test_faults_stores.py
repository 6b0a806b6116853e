"""Redis and PostgreSQL going away under load, against a real ``llmdock serve``.

Redis killed (SIGKILL) and started again: requests keep being answered (the cache and rpm counters fall
back to each worker's own, as docs/configuration.md's ``redis_url`` says), ``/ready`` reports the degraded
Redis while still serving, and once Redis is back it is used again. PostgreSQL stopped and started again:
requests keep being answered, and every trace id a client received is in the store once afterwards.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import func, select

from llmdock.store import Store
from llmdock.store.models import Trace
from tests.integration.conftest import Server, start_server, stop_server
from tests.pgserver import PgServer
from tests.redisserver import RedisServer, redis_server_or_skip

pytestmark = pytest.mark.server
CLIENTS = 8


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_or_skip()


class Clients:
    """``CLIENTS`` threads asking one after another; every status and answered trace id is kept."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.statuses: Counter[str] = Counter()
        self.answered: list[str] = []
        self.stop = threading.Event()
        self.counter = itertools.count()
        self.threads = [threading.Thread(target=self._loop) for _ in range(CLIENTS)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self.server.v1, timeout=30) as client:
            while not self.stop.is_set():
                # A new prompt each time at temperature 0: a cache miss that is written to the cache.
                n = next(self.counter)
                body = {"model": "fake", "messages": [{"role": "user", "content": f"q{n}"}], "temperature": 0}
                try:
                    answer = client.post("/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    self.statuses[type(exc).__name__] += 1
                    continue
                self.statuses[str(answer.status_code)] += 1
                if answer.status_code == 200:
                    self.answered.append(answer.headers["x-llmdock-trace-id"])

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def count(self) -> int:
        return sum(self.statuses.values())


def wait_for(what: str, check: Callable[[], bool], timeout: float = 20.0) -> float:
    """Seconds until ``check()`` held; fails the test after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


def ready(server: Server) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(server.url + "/ready", timeout=10).json()
    return state


@contextmanager
def serving(home: Path, extra: str) -> Iterator[Server]:
    home.mkdir(parents=True, exist_ok=True)
    (home / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
        "models:\n  fake:\n    deployments: [{backend: fake, rpm: 1000000}]\n" + extra
    )
    server = start_server(home, "--config", str(home / "llmdock.yaml"))
    try:
        yield server
    finally:
        stop_server(server)


@pytest.mark.redis
def test_redis_killed_and_restarted_under_load_fails_no_request(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    probe = redis.Redis.from_url(redis_server.url)
    with serving(tmp_path / "home", f"redis_url: {redis_server.url}\n") as server, Clients(server) as load:
        wait_for("the cache and the rpm counters are in Redis", lambda: probe.dbsize() > 10)
        assert redis_server.proc is not None
        redis_server.proc.kill()  # SIGKILL: no goodbye to the clients
        redis_server.proc.wait(timeout=10)
        wait_for("/ready reports Redis degraded", lambda: ready(server)["redis"]["ok"] is False)
        state = ready(server)
        assert state["ready"] is True  # degraded, still serving
        assert state["redis"]["degraded_to"] == "in-process state"
        during = load.count()
        time.sleep(2)
        assert load.count() - during > 20  # answers kept coming while Redis was away
        redis_server.start()  # a fresh, empty Redis on the same port
        probe = redis.Redis.from_url(redis_server.url)
        wait_for("/ready reports Redis back", lambda: ready(server)["redis"] == {"ok": True})
        wait_for("the restarted Redis is used again", lambda: probe.dbsize() > 10)
    assert set(load.statuses) == {"200"}, load.statuses


@pytest.mark.postgres
def test_postgres_restarted_under_load_loses_no_answered_trace(pg: PgServer, tmp_path: Path) -> None:
    url = pg.create_database()
    with serving(tmp_path / "home", f"database_url: '{url}'\n") as server:
        with Clients(server) as load:
            wait_for("some answers", lambda: len(load.answered) > 50)
            pg.stop("fast")  # ends the gateway's connections, as a crash or restart of the database would
            during = load.count()
            wait_for("answers while PostgreSQL is down", lambda: load.count() - during > 50)
            assert ready(server)["store"]["ok"] is False
            pg.start()
            wait_for("the store is back", lambda: ready(server)["store"]["ok"] is True)
            time.sleep(1)
        wait_for("every trace written", lambda: ready(server)["trace_writer"]["pending"] == 0)
        store = Store(url, migrate=False)
        try:
            with store.session() as s:
                stored = dict(s.execute(select(Trace.id, func.count()).group_by(Trace.id)).all())
        finally:
            store.close()
    assert set(load.statuses) == {"200"}, load.statuses
    missing = [t for t in load.answered if t not in stored]
    assert not missing, f"{len(missing)} of {len(load.answered)} answered requests have no trace"
    assert max(stored.values()) == 1
