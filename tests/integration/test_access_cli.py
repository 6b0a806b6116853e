"""Access control from the command line and over a real socket: keys, audit verify, data export/erase,
retention, TLS."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from llmdock.store import Store, TraceRecord, write_traces
from tests.conftest import self_signed_cert
from tests.integration.conftest import run_cli, start_server, stop_server

FAKE_CONFIG = "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\nmodels:\n  fake: {backend: fake}\n"


def llmdock(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, stdin=stdin, timeout=120)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "llmdock.yaml").write_text(FAKE_CONFIG)
    return tmp_path


def trace(trace_id: str, subject: str, days_ago: float = 0) -> TraceRecord:
    return TraceRecord(
        id=trace_id,
        created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago),
        operation="chat",
        model="fake",
        status="ok",
        duration_ms=1.0,
        input={"messages": [{"role": "user", "content": f"secret of {subject}"}]},
        output="answer",
        subject=subject,
    )


def test_keys_cli_lifecycle_and_audit_verify(home: Path) -> None:
    created = llmdock(home, "keys", "create", "--user", "root", "--role", "admin", "--rpm", "60")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ldk_")
    assert "not shown again" in created.stderr
    listed = llmdock(home, "keys", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [r["prefix"] for r in rows] == [key[:16]]
    assert rows[0]["role"] == "admin"
    assert key not in listed.stdout
    rotated = llmdock(home, "keys", "rotate", key[:16])
    new_key = rotated.stdout.strip()
    assert new_key.startswith("ldk_")
    assert new_key != key
    states = {r["prefix"]: r["state"] for r in json.loads(llmdock(home, "keys", "list", "--json").stdout)}
    assert states == {key[:16]: "revoked", new_key[:16]: "active"}
    bad = llmdock(home, "keys", "create", "--user", "x", "--role", "boss")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("llmdock: error:")
    assert "unknown role 'boss'" in bad.stderr
    assert "Traceback" not in bad.stderr

    ok = llmdock(home, "audit", "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact" in ok.stdout
    actions = [r["action"] for r in json.loads(llmdock(home, "audit", "list", "--json").stdout)]
    assert actions[::-1][:3] == ["org.create", "user.create", "key.create"]
    db = sqlite3.connect(home / "llmdock.db")
    db.execute("UPDATE audit_log SET actor = 'nobody' WHERE seq = 2")
    db.execute("DELETE FROM audit_log WHERE seq = 4")
    db.commit()
    broken = llmdock(home, "audit", "verify")
    assert broken.returncode == 1
    assert "audit: row 2: content edited" in broken.stdout
    assert "audit: rows 4-4: removed" in broken.stdout


def test_data_export_erase_and_purge(home: Path) -> None:
    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    write_traces(
        store, [trace("a1", "alice@example.com"), trace("a2", "alice@example.com"), trace("b1", "bob")]
    )
    write_traces(store, [trace("old", "bob", days_ago=40)])
    out = home / "export.json"
    exported = llmdock(home, "data", "export", "--subject", "alice@example.com", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    data = json.loads(out.read_text())
    assert sorted(t["id"] for t in data["traces"]) == ["a1", "a2"]
    assert data["traces"][0]["input"]["messages"][0]["content"] == "secret of alice@example.com"

    erased = llmdock(home, "data", "erase", "--subject", "alice@example.com", "--yes")
    assert erased.returncode == 0, erased.stderr
    report = json.loads(erased.stdout)
    assert report["traces_deleted"] == 2
    assert report["subject"].startswith("subject:")
    store.engine.dispose()
    con = sqlite3.connect(home / "llmdock.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    dump = "\n".join(con.iterdump())
    assert "alice@example.com" not in dump  # not in traces, not in the audit rows of the export/erasure
    assert "secret of bob" in dump

    purged = llmdock(home, "data", "purge", "--older-than-days", "30")
    assert purged.stdout.strip() == "deleted 1 traces"
    actions = [r["action"] for r in json.loads(llmdock(home, "audit", "list", "--json").stdout)]
    assert actions[:3] == ["retention.purge", "data.erase", "data.export"]
    assert llmdock(home, "audit", "verify").returncode == 0


@pytest.mark.server
def test_tls_server_with_auth_on(home: Path) -> None:
    key = llmdock(home, "keys", "create", "--user", "root", "--role", "admin").stdout.strip()
    cert, private = self_signed_cert(home)
    headers = {"authorization": f"Bearer {key}"}
    trust = ssl.create_default_context(cafile=str(cert))
    server = start_server(
        home,
        "--ssl-certfile",
        str(cert),
        "--ssl-keyfile",
        str(private),
        env={"LLMDOCK_CONFIG": str(home / "llmdock.yaml")},
        headers=headers,
        verify=trust,
        scheme="https",
        timeout=60,
    )
    try:
        with httpx.Client(base_url=server.url, verify=trust) as client:
            assert client.get("/health").status_code == 200
            assert client.get("/ready").status_code == 401
            chat = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "user": "carol"}
            assert client.post("/v1/chat/completions", json=chat).status_code == 401
            resp = client.post("/v1/chat/completions", json=chat, headers=headers)
            assert resp.status_code == 200, resp.text
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(server.url.replace("https", "http") + "/health", timeout=5)
    finally:
        stop_server(server)
    half = llmdock(home, "serve", "--ssl-certfile", str(cert))
    assert half.returncode == 2
    assert "give both --ssl-certfile and --ssl-keyfile" in half.stderr
