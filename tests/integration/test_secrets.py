"""Provider secrets encrypted at rest: the CLI, ``api_key: secret:NAME``, and key rotation that survives
being killed half-way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from llmdock.config import ModelConfig, Settings
from llmdock.errors import ConfigError
from llmdock.privacy.crypto import Keyring, new_key, parse_keys
from llmdock.privacy.rotation import key_usage, rotate
from llmdock.rag.memory import load_turns
from llmdock.runtime import Runtime
from llmdock.store import Store, TraceRecord, get_trace, write_traces
from llmdock.store.kb_rows import KbMemoryRow, add_memory
from llmdock.store.keyring import sealed_key_id
from llmdock.store.secret_rows import Secret, get_secret, list_secrets, secret_context, set_secret
from tests.conftest import Gateway
from tests.integration.conftest import run_cli
from tests.pgserver import pg_server_or_skip
from tests.upstream import Upstream

MakeGateway = Callable[[Settings], Any]


def llmdock(home: Path, *args: str, key: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, stdin=stdin, timeout=120, env={"LLMDOCK_ENCRYPTION_KEY": key})


def ring(*keys: str) -> Keyring:
    return Keyring(parse_keys(",".join(keys), "test"))


def test_secrets_cli_stores_lists_and_deletes_without_showing_the_value(tmp_path: Path) -> None:
    key = new_key()
    done = llmdock(tmp_path, "secrets", "set", "openai", key=key, stdin="sk-live-abcdef\n")
    assert done.returncode == 0, done.stderr
    listed = llmdock(tmp_path, "secrets", "list", key=key)
    assert "openai" in listed.stdout
    assert "sk-live-abcdef" not in listed.stdout
    assert b"sk-live-abcdef" not in b"".join(p.read_bytes() for p in tmp_path.glob("llmdock.db*"))
    store = Store(f"sqlite:///{tmp_path / 'llmdock.db'}")
    assert get_secret(store, ring(key), "openai") == "sk-live-abcdef"
    wrong = llmdock(tmp_path, "secrets", "status", key=new_key())
    assert wrong.returncode == 0  # status names key ids; a key not in the keyring is marked
    assert "NO" in wrong.stdout
    assert llmdock(tmp_path, "secrets", "delete", "openai", key=key).returncode == 0
    assert list_secrets(store) == []
    missing = llmdock(tmp_path, "secrets", "delete", "openai", key=key)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "llmdock: error: no secret named 'openai' (llmdock secrets list)"


async def test_an_openai_compat_model_authenticates_with_a_stored_secret(
    gateway_factory: MakeGateway,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    key = new_key()
    monkeypatch.setenv("LLMDOCK_ENCRYPTION_KEY", key)
    store = Store(f"sqlite:///{tmp_path / 'llmdock.db'}")
    set_secret(store, ring(key), "upstream-key", "sk-from-the-vault")
    upstream = Upstream("up")
    try:
        model = ModelConfig(backend="openai_compat", base_url=upstream.url, api_key="secret:upstream-key")
        gw: Gateway = await gateway_factory(make_settings(models={"fake": model}, default_embedding_model=""))
        resp = await gw.client.post(
            "/v1/chat/completions", json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert resp.status_code == 200, resp.text
        assert upstream.last_authorization == "Bearer sk-from-the-vault"
    finally:
        upstream.stop()


def test_an_unknown_secret_is_a_config_error_naming_the_field(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMDOCK_ENCRYPTION_KEY", new_key())
    model = ModelConfig(backend="openai_compat", base_url="http://127.0.0.1:9/v1", api_key="secret:nope")
    with pytest.raises(ConfigError, match="secret 'nope': no secret named 'nope'") as info:
        Runtime(make_settings(models={"fake": model}, default_embedding_model=""), with_store=False)
    assert info.value.where == "models.fake.api_key"


def seed(store: Store, keyring: Keyring, secrets: int, traces: int) -> dict[str, str]:
    now = datetime.now(UTC)
    values = {f"s{i:05d}": f"value-{i}" for i in range(secrets)}
    with store.session() as s, s.begin():
        s.add_all(
            Secret(name=n, value=keyring.seal_text(v, secret_context(n)), created_at=now, updated_at=now)
            for n, v in values.items()
        )
    records = []
    for i in range(traces):
        tid = f"{i:032x}"
        records.append(
            TraceRecord(
                tid,
                now,
                "chat",
                "m",
                "ok",
                duration_ms=1,
                input={"$sealed": keyring.seal(b'{"prompt": "p%d"}' % i, f"trace:{tid}:input")},
                output=keyring.seal_text(f"answer {i}", f"trace:{tid}:output"),
            )
        )
    write_traces(store, records)
    return values


def key_ids(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT value FROM secrets UNION ALL SELECT output FROM traces")).all()
    counts: dict[str, int] = {}
    for (value,) in rows:
        counts[sealed_key_id(value)] = counts.get(sealed_key_id(value), 0) + 1
    return counts


def rotated_rows(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(sum(rows_done), 0) FROM key_rotations")).scalar() or 0)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'llmdock.db'}"
        return
    server = pg_server_or_skip()
    try:
        yield server.create_database()
    finally:
        server.destroy()


def test_rotation_killed_half_way_resumes_and_every_value_still_decrypts(tmp_path: Path, db_url: str) -> None:
    old, new = new_key(), new_key()
    store = Store(db_url)
    values = seed(store, ring(old), secrets=4000, traces=500)
    env = {
        **os.environ,
        "LLMDOCK_HOME": str(tmp_path),
        "LLMDOCK_DATABASE_URL": db_url,
        "LLMDOCK_ENCRYPTION_KEY": f"{new},{old}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmdock", "secrets", "rotate-key", "--batch-size", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while rotated_rows(store) < 200 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the rotation finished before it could be killed"

    both = ring(new, old)
    half = key_ids(store)
    assert set(half) == {ring(new).current_id, ring(old).current_id}  # killed in the middle: some moved
    assert {n: get_secret(store, both, n) for n in values} == values  # everything still opens

    again = subprocess.run(
        [sys.executable, "-m", "llmdock", "secrets", "rotate-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert "resumed an interrupted rotation" in again.stdout
    assert key_ids(store) == {ring(new).current_id: len(values) + 500}
    only_new = Store(db_url, keyring=ring(new))
    assert {n: get_secret(only_new, ring(new), n) for n in values} == values
    trace, _ = get_trace(only_new, f"{499:032x}")
    assert trace.input == {"prompt": "p499"}
    assert trace.output == "answer 499"
    store.close()
    only_new.close()


class Interrupted(Exception):
    pass


def test_rotation_reseals_conversation_memory_and_resumes_inside_it(db_url: str) -> None:
    """kb_memory has integer ids: rotation walks them, resumes after its last batch, and afterwards the
    turns open with the old key gone from the keyring (the old rotation left them under the old key)."""
    old, new = new_key(), new_key()
    store = Store(db_url)
    now = datetime.now(UTC)
    texts = [f"turn {i}: the codeword is q{i}" for i in range(30)]
    with store.session() as s, s.begin():
        add_memory(
            s, [KbMemoryRow(session="s1", role="user", content="stored in the clear", created_at=now)], None
        )
        add_memory(
            s,
            [
                KbMemoryRow(session="s1", role=("user", "assistant")[i % 2], content=t, created_at=now)
                for i, t in enumerate(texts)
            ],
            ring(old),
        )

    def stop_inside_memory(table: str, done: int, total: int) -> None:
        if table == "kb_memory" and 0 < done < total:
            raise Interrupted

    with pytest.raises(Interrupted):
        rotate(store, ring(new, old), batch_size=8, progress=stop_inside_memory)
    assert key_usage(store) == {
        ring(new).current_id: 7,
        ring(old).current_id: 23,
    }  # the first 8 rows; one was clear
    again = rotate(store, ring(new, old), batch_size=8)
    assert again.resumed
    assert again.resealed == 23
    assert key_usage(store) == {ring(new).current_id: 30}
    only_new = Store(db_url, keyring=ring(new))
    turns = load_turns(only_new, "", "s1", 20)
    assert [t.content for t in turns] == ["stored in the clear", *texts]
    store.close()
    only_new.close()
