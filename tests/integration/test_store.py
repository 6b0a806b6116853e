"""The store on real databases: the same tests on SQLite and on a throwaway PostgreSQL server, plus what
happens when PostgreSQL goes away (the writer keeps traces, /ready says so, nothing is lost)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

import llmdock.store.traces as traces_module
from llmdock.config import Settings, TraceSettings
from llmdock.errors import NotFound
from llmdock.store import (
    SpanRecord,
    Store,
    TraceRecord,
    TraceWriter,
    count_traces,
    get_trace,
    list_traces,
    write_traces,
)
from llmdock.store.engine import alembic_config
from llmdock.store.models import Trace
from tests.conftest import Gateway, fake_settings
from tests.pgserver import PgServer

CHAT = {"model": "fake", "messages": [{"role": "user", "content": "héllo wörld 👋"}]}
IST = timezone(timedelta(hours=5, minutes=30))


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


# -- helpers -------------------------------------------------------------------------------------------


def make_trace(
    trace_id: str,
    created_at: datetime | None = None,
    *,
    model: str = "fake",
    output: str = "ok",
    n_spans: int = 3,
) -> TraceRecord:
    created = created_at or datetime.now(UTC)
    names = ["preprocess", "generate", "postprocess", "guard", "cache"]
    spans = [
        SpanRecord(names[i % len(names)], created + timedelta(milliseconds=i), 1.5 * (i + 1), "ok", {"i": i})
        for i in range(n_spans)
    ]
    return TraceRecord(
        id=trace_id,
        created_at=created,
        operation="chat",
        model=model,
        status="ok",
        duration_ms=12.5,
        backend="fake",
        output=output,
        spans=spans,
    )


def tid(n: int, prefix: str = "") -> str:
    """A 32-character trace id."""
    return prefix + f"{n:0{32 - len(prefix)}x}"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.02)


def trace_ids(store: Store) -> set[str]:
    with store.session() as s:
        return set(s.scalars(select(Trace.id)))


def pg_settings(home: Path, url: str) -> Settings:
    return fake_settings(
        home,
        database_url=url,
        models=None,
        trace=TraceSettings(batch_size=64, flush_interval_s=0.05),
    )


# -- the same tests on SQLite and PostgreSQL -------------------------------------------------------------


def test_migrations_to_head_are_idempotent(db_url: str) -> None:
    first = Store(db_url)
    try:
        assert first.migrated
        write_traces(first, [make_trace(tid(1))])
    finally:
        first.close()
    second = Store(db_url)  # opening again runs the upgrade again: nothing to do, nothing lost
    try:
        assert second.migrated
        second.migrate()
        assert count_traces(second) == 1
        with second.engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert versions == [ScriptDirectory.from_config(alembic_config(second.engine)).get_current_head()]
        tables = set(inspect(second.engine).get_table_names())
        assert {"traces", "alembic_version"} <= tables
        assert "spans" not in tables  # since 0008 the spans are on their trace's row
        assert "spans" in {c["name"] for c in inspect(second.engine).get_columns("traces")}
    finally:
        second.close()


def test_traces_round_trip_with_spans_json_unicode_and_time_zones(store: Store) -> None:
    created = datetime(2025, 3, 4, 12, 6, 7, 123456, tzinfo=IST)
    rec = TraceRecord(
        id=tid(7),
        created_at=created,
        operation="chat",
        model="modèle-测试",
        status="error",
        duration_ms=1234.5625,
        backend="fake",
        http_status=502,
        stream=True,
        prompt_tokens=11,
        completion_tokens=22,
        finish_reason="length",
        error="upstream said: ¡no! ✗",
        input={"messages": [{"role": "user", "content": "Grüße, 世界 🌍 שלום e\u0301"}]},
        output="réponse — 答案 🚀\nsecond line\ttab",
        attributes={
            "gen_ai.request.temperature": 0.7,
            "gen_ai.request.stop_sequences": ["\n\n", "###"],
            "nested": {"list": [1, "two", None, True, 3.25], "ключ": "значение", "empty": {}},
        },
        spans=[
            SpanRecord("preprocess", created, 0.25, "ok", {"normalized": "NFC"}),
            SpanRecord("generate", created + timedelta(microseconds=250), 1200.0, "error", {"ttft_ms": 3.5}),
            SpanRecord("postprocess", created + timedelta(seconds=1), 0.125, "ok", {}),
            SpanRecord("audit", created + timedelta(seconds=1), 0.0, "ok", {"note": "same start as before"}),
        ],
    )
    write_traces(store, [rec])

    trace, spans = get_trace(store, rec.id)
    assert trace.id == rec.id
    assert trace.model == "modèle-测试"
    assert (trace.operation, trace.status, trace.backend) == ("chat", "error", "fake")
    assert (trace.http_status, trace.stream) == (502, 1)
    assert (trace.prompt_tokens, trace.completion_tokens, trace.finish_reason) == (11, 22, "length")
    assert trace.duration_ms == 1234.5625
    assert trace.error == rec.error
    assert trace.input == rec.input
    assert trace.output == rec.output
    assert trace.attributes == rec.attributes
    # The instant survives, and it comes back as an aware UTC datetime on every backend.
    assert trace.created_at == created
    assert trace.created_at.utcoffset() == timedelta(0)
    assert trace.created_at.replace(tzinfo=None) == datetime(2025, 3, 4, 6, 36, 7, 123456)

    assert [s.name for s in spans] == ["preprocess", "generate", "postprocess", "audit"]
    assert [s.seq for s in spans] == [0, 1, 2, 3]
    assert all(s.trace_id == rec.id for s in spans)
    assert [s.started_at for s in spans] == [s.started_at for s in rec.spans]
    assert all(s.started_at.utcoffset() == timedelta(0) for s in spans)
    assert [s.attributes for s in spans] == [s.attributes for s in rec.spans]
    assert [(s.status, s.duration_ms) for s in spans] == [(s.status, s.duration_ms) for s in rec.spans]


def test_list_traces_newest_first_across_time_zones_with_limit_and_model(store: Store) -> None:
    base = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    # Wall-clock order and real order differ: 16:00 in India is 10:30 UTC, earlier than 11:00 UTC.
    write_traces(
        store,
        [
            make_trace(tid(1), base.astimezone(IST) + timedelta(hours=-2), model="a"),  # 10:00Z
            make_trace(tid(2), base - timedelta(hours=1), model="b"),  # 11:00Z
            make_trace(tid(3), datetime(2025, 1, 1, 16, 0, tzinfo=IST), model="a"),  # 10:30Z
            make_trace(tid(4), base, model="a", n_spans=0),  # 12:00Z
        ],
    )
    assert [t.id for t in list_traces(store)] == [tid(4), tid(2), tid(3), tid(1)]
    assert [t.id for t in list_traces(store, limit=2)] == [tid(4), tid(2)]
    assert [t.id for t in list_traces(store, model="a")] == [tid(4), tid(3), tid(1)]
    assert list_traces(store, model="nope") == []
    assert all(t.created_at.tzinfo is not None for t in list_traces(store))
    assert get_trace(store, tid(4))[1] == []


def test_get_trace_by_unique_prefix(store: Store) -> None:
    write_traces(
        store,
        [make_trace(tid(1, "abc1")), make_trace(tid(2, "abc2")), make_trace(tid(3, "ffff"))],
    )
    assert get_trace(store, "abc1")[0].id == tid(1, "abc1")
    assert get_trace(store, "f")[0].id == tid(3, "ffff")
    assert get_trace(store, tid(2, "abc2"))[0].id == tid(2, "abc2")
    with pytest.raises(NotFound, match="ambiguous"):
        get_trace(store, "abc")
    with pytest.raises(NotFound, match="ambiguous"):
        get_trace(store, "")
    with pytest.raises(NotFound, match="no trace"):
        get_trace(store, "0123")
    with pytest.raises(NotFound, match="no trace"):
        get_trace(store, tid(1, "abc1") + "0")
    # LIKE wildcards in what the user typed are literal characters, not patterns.
    for pattern in ("%", "_", "abc_", "a%1"):
        with pytest.raises(NotFound, match="no trace"):
            get_trace(store, pattern)


def test_trace_writer_batches_a_thousand_traces(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real_write = traces_module.write_traces

    def counting_write(s: Store, records: list[TraceRecord], **options: Any) -> None:
        real_write(s, records, **options)
        batches.append(len(records))

    monkeypatch.setattr(traces_module, "write_traces", counting_write)
    writer = TraceWriter(store, batch_size=100, flush_interval_s=0.05)
    try:
        base = datetime.now(UTC)
        for i in range(1000):
            writer.submit(make_trace(tid(i), base + timedelta(microseconds=i)))
        assert writer.flush(30)
        assert writer.status() == {"ok": True, "pending": 0, "written": 1000, "dropped": 0, "last_error": ""}
    finally:
        writer.close(timeout=5)
    assert sum(batches) == 1000
    assert max(batches) <= 100
    assert len(batches) < 100, f"traces were not batched: {batches}"
    assert count_traces(store) == 1000
    assert trace_ids(store) == {tid(i) for i in range(1000)}
    with store.session() as s:
        assert sum(len(spans) for spans in s.scalars(select(Trace.spans))) == 3000
    assert list_traces(store, limit=1)[0].id == tid(999)


def test_a_trace_the_store_refuses_does_not_hold_back_the_others(store: Store) -> None:
    write_traces(store, [make_trace(tid(1))])
    duplicate = make_trace(tid(1))
    not_json = make_trace(tid(3))
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    not_json.attributes = {"when": when, "ids": {1, 2}}  # a plugin's attributes that JSON has no type for
    writer = TraceWriter(store, batch_size=10, flush_interval_s=0.05)
    try:
        for rec in (make_trace(tid(2)), duplicate, not_json, make_trace(tid(4))):
            writer.submit(rec)
        assert writer.flush(10), writer.status()
        assert writer.status() == {"ok": True, "pending": 0, "written": 3, "dropped": 1, "last_error": ""}
        writer.submit(make_trace(tid(5)))  # and the writer is still alive
        assert writer.flush(10)
    finally:
        writer.close(timeout=2)
    assert trace_ids(store) == {tid(1), tid(2), tid(3), tid(4), tid(5)}
    # Kept as text rather than dropping the trace.
    assert get_trace(store, tid(3))[0].attributes == {"when": when.isoformat(), "ids": "{1, 2}"}


# -- PostgreSQL only ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_refusing_nul_drops_only_that_trace_and_nan_is_stored_as_null(pg: PgServer) -> None:
    store = Store(pg.create_database())
    nul = make_trace(tid(1), output="a\x00b")  # anyone can send "\u0000" in a prompt
    nan = make_trace(tid(2))
    nan.attributes = {"score": float("nan")}
    writer = TraceWriter(store, batch_size=10, flush_interval_s=0.05)
    try:
        for rec in (nul, make_trace(tid(3)), nan, make_trace(tid(4))):
            writer.submit(rec)
        assert writer.flush(10), writer.status()
        assert writer.status() == {"ok": True, "pending": 0, "written": 3, "dropped": 1, "last_error": ""}
        assert trace_ids(store) == {tid(2), tid(3), tid(4)}
        assert get_trace(store, tid(2))[0].attributes == {"score": None}
    finally:
        writer.close(timeout=2)
        store.close()


# -- PostgreSQL outages --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_trace_writer_keeps_traces_while_postgres_is_down_and_recovers(pg: PgServer) -> None:
    store = Store(pg.create_database())
    writer = TraceWriter(store, batch_size=50, flush_interval_s=0.05)
    try:
        writer.submit(make_trace(tid(0)))
        assert writer.flush(10)
        assert writer.status()["ok"]

        pg.stop()
        for i in range(1, 121):
            writer.submit(make_trace(tid(i)))
        wait_until(lambda: not writer.status()["ok"], 10, "the writer to notice the outage")
        status = writer.status()
        assert status["last_error"]
        assert status["pending"] == 120
        assert status["dropped"] == 0
        assert status["written"] == 1
        assert writer.flush(0.3) is False  # nothing can be written, and flush says so in bounded time

        pg.start()
        assert writer.flush(20), writer.status()
        assert writer.status() == {"ok": True, "pending": 0, "written": 121, "dropped": 0, "last_error": ""}
        assert trace_ids(store) == {tid(i) for i in range(121)}
    finally:
        writer.close(timeout=2)
        store.close()


async def _ready(gw: Gateway) -> tuple[int, dict[str, Any]]:
    resp = await gw.client.get("/ready")
    return resp.status_code, resp.json()


async def _wait_ready(gw: Gateway, within: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        code, body = await _ready(gw)
        if code == 200:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/ready still {code} after {within}s: {body}")
        await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_gateway_serves_while_postgres_is_down_and_ready_reports_it(
    pg: PgServer, tmp_path: Path, gateway_factory: Callable[[Settings], Any]
) -> None:
    gw: Gateway = await gateway_factory(pg_settings(tmp_path, pg.create_database()))
    assert gw.runtime.store is not None
    assert gw.runtime.writer is not None
    code, body = await _ready(gw)
    assert code == 200, body

    pg.stop()
    resp = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "fake answer to: héllo wörld 👋"
    trace_id = resp.headers["x-llmdock-trace-id"]
    writer = gw.runtime.writer
    await asyncio.to_thread(wait_until, lambda: not writer.status()["ok"], 10, "the writer to fail")

    code, body = await _ready(gw)
    assert code == 503
    assert body["ready"] is False
    assert body["store"]["ok"] is False
    assert "unreachable" in body["store"]["error"]
    assert body["trace_writer"]["ok"] is False
    assert body["trace_writer"]["pending"] == 1
    assert body["trace_writer"]["last_error"]

    pg.start()
    body = await _wait_ready(gw)
    assert body["store"] == {"ok": True}
    assert body["trace_writer"]["ok"] is True
    assert body["trace_writer"]["pending"] == 0
    trace, spans = get_trace(gw.runtime.store, trace_id)
    assert trace.input == {"messages": CHAT["messages"]}
    assert trace.output == "fake answer to: héllo wörld 👋"
    assert [s.name for s in spans] == ["preprocess", "cache", "generate", "structured", "postprocess"]


@pytest.mark.postgres
async def test_runtime_started_while_postgres_is_down_writes_traces_once_it_is_up(
    pg: PgServer, tmp_path: Path, gateway_factory: Callable[[Settings], Any]
) -> None:
    url = pg.create_database()
    pg.stop()
    gw: Gateway = await gateway_factory(pg_settings(tmp_path, url))
    store, writer = gw.runtime.store, gw.runtime.writer
    assert store is not None
    assert writer is not None
    assert not store.migrated
    assert "cannot migrate the store" in gw.runtime.store_error

    resp = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200
    trace_id = resp.headers["x-llmdock-trace-id"]
    code, body = await _ready(gw)
    assert code == 503
    assert body["store"]["ok"] is False

    pg.start()
    # No /ready call in between: the writer itself must migrate the new database before writing.
    assert await asyncio.to_thread(writer.flush, 20), writer.status()
    assert store.migrated
    assert writer.status()["ok"]
    assert get_trace(store, trace_id)[0].model == "fake"
    body = await _wait_ready(gw)
    assert body["store"] == {"ok": True}


def test_migration_0008_moves_spans_onto_their_traces_and_back(db_url: str) -> None:
    from alembic import command

    store = Store(db_url, migrate=False)
    cfg = alembic_config(store.engine)
    try:
        command.upgrade(cfg, "0007")
        with store.engine.begin() as conn:  # a trace with two spans, as 0007 stored them
            conn.execute(
                text(
                    "INSERT INTO traces (id, created_at, operation, model, status, duration_ms, backend, "
                    "http_status, stream, prompt_tokens, completion_tokens, finish_reason, error, input, "
                    "output, attributes, deployment, cost, cache, subject, api_key_id, team_id) VALUES "
                    "(:id, :at, 'chat', 'm', 'ok', 1.0, 'fake', 200, 0, 1, 1, 'stop', '', '{}', 'o', '{}', "
                    "'', 0, '', '', '', '')"
                ),
                {"id": tid(1), "at": datetime(2026, 1, 2, 3, 4, 5, 6, UTC)},
            )
            for seq, name in enumerate(["generate", "preprocess"][::-1]):
                conn.execute(
                    text(
                        "INSERT INTO spans (trace_id, seq, name, started_at, duration_ms, status, attributes) "
                        "VALUES (:t, :seq, :name, :at, 2.5, 'ok', :attrs)"
                    ),
                    {
                        "t": tid(1),
                        "seq": seq,
                        "name": name,
                        "at": datetime(2026, 1, 2, 3, 4, 5, 7 + seq, UTC),
                        "attrs": f'{{"k": {seq}}}',
                    },
                )
        command.upgrade(cfg, "head")
        _, spans = get_trace(store, tid(1))
        assert [(s.seq, s.name, s.attributes, s.duration_ms) for s in spans] == [
            (0, "preprocess", {"k": 0}, 2.5),
            (1, "generate", {"k": 1}, 2.5),
        ]
        assert spans[1].started_at == datetime(2026, 1, 2, 3, 4, 5, 8, UTC)
        command.downgrade(cfg, "0007")
        with store.engine.connect() as conn:
            back = conn.execute(text("SELECT seq, name, duration_ms FROM spans ORDER BY seq")).all()
        assert [tuple(r) for r in back] == [(0, "preprocess", 2.5), (1, "generate", 2.5)]
    finally:
        store.close()
