"""Shared fixtures: settings on a temp home, an in-process gateway on the fake backend, free ports."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmdock.config import ModelConfig, Settings
from llmdock.gateway import create_app
from llmdock.runtime import Runtime
from tests.pgserver import PgServer, pg_server_or_skip

# Tests that start a server or a database, load a real model or open a browser. `make test` runs pytest-xdist
# with two workers and ``--dist loadgroup``: these all go to one worker, one at a time as without xdist (their
# kill tests and timeouts assume a machine that runs one of them), while the other worker runs the rest.
SERIAL_MARKS = frozenset({"model", "postgres", "redis", "server", "browser", "clients", "fuzz"})


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERIAL_MARKS & {mark.name for mark in item.iter_markers()}:
            item.add_marker(pytest.mark.xdist_group("services"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fake_settings(home: Path, **overrides: Any) -> Settings:
    """Settings that serve only fake models (no real weights), storing in ``home``."""
    models = overrides.pop("models", None) or {
        "fake": ModelConfig(backend="fake"),
        "fake-embed": ModelConfig(backend="fake", task="embedding"),
    }
    values: dict[str, Any] = {
        "home": home,
        "include_builtin_models": False,
        "models": models,
        "default_model": "fake",
        "default_embedding_model": "fake-embed" if "fake-embed" in models else "",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return fake_settings(tmp_path, **overrides)

    return make


class Gateway:
    """An in-process gateway (ASGI transport, no sockets) and its runtime."""

    def __init__(self, runtime: Runtime, client: httpx.AsyncClient) -> None:
        self.runtime = runtime
        self.client = client

    def flush_traces(self) -> None:
        assert self.runtime.writer is not None
        assert self.runtime.writer.flush(10)


@pytest.fixture
async def gateway_factory() -> AsyncIterator[Callable[[Settings], Any]]:
    opened: list[Gateway] = []

    async def make(settings: Settings) -> Gateway:
        runtime = Runtime(settings)
        await runtime.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://gw"
        )
        gw = Gateway(runtime, client)
        opened.append(gw)
        return gw

    yield make
    for gw in opened:
        await gw.client.aclose()
        await gw.runtime.close()


@pytest.fixture
async def gateway(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> Gateway:
    gw: Gateway = await gateway_factory(make_settings())
    return gw


# -- PostgreSQL: one throwaway server per test session, a fresh database per test -----------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgServer]:
    server = pg_server_or_skip()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg(pg_cluster: PgServer) -> PgServer:
    """The session's server, running (an outage test that failed half-way may have left it stopped)."""
    pg_cluster.start()
    return pg_cluster


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'llmdock.db'}"
    server: PgServer = request.getfixturevalue("pg")
    return server.create_database()


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key, and that key (PEM files in ``tmp``)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
