"""A throwaway PostgreSQL server for tests, from the Debian ``postgresql`` package.

``initdb`` refuses to run as root, so when the tests run as root the server's commands run as the
``postgres`` user (``runuser -u postgres --``) on a temporary directory owned by that user. The server
listens on 127.0.0.1 only, on a free port, with trust authentication and no Unix socket; durability is
switched off (fsync, full-page writes) because nothing it holds outlives the test session.

Use :func:`pg_server_or_skip` from a fixture: it skips when PostgreSQL is not installed, unless
``LLMDOCK_REQUIRE_SERVICES=1`` says the run must exercise it, in which case it fails.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be run here (binaries or the ``postgres`` user missing)."""


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb, pg_ctl and pg_isready."""
    explicit = os.environ.get("LLMDOCK_PG_BINDIR")

    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin", path)
        return tuple(int(p) for p in m.group(1).split(".") if p) if m else ()

    if explicit:
        candidates = [explicit]
    else:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(str(Path(on_path).parent))
    for cand in candidates:
        d = Path(cand)
        if all(
            (d / tool).is_file() and os.access(d / tool, os.X_OK)
            for tool in ("initdb", "pg_ctl", "pg_isready")
        ):
            return d
    raise PgUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl, pg_isready) not found in {explicit} (LLMDOCK_PG_BINDIR)"
        if explicit
        else "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH; "
        "install Debian's postgresql package or set LLMDOCK_PG_BINDIR)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temp dir. :meth:`stop` and :meth:`start` may be repeated (outage tests)."""

    def __init__(self, bindir: Path | None = None, *, dbname: str = "llmdock_test") -> None:
        self.bindir = bindir or find_bindir()
        self.dbname = dbname
        self.as_root = os.geteuid() == 0
        if self.as_root:
            if shutil.which("runuser") is None:
                raise PgUnavailable(
                    "running as root but runuser is missing, so initdb cannot run as postgres"
                )
            try:
                import pwd

                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PgUnavailable("running as root but there is no 'postgres' user for initdb") from None
            self._uid, self._gid = pw.pw_uid, pw.pw_gid
        self.base = Path(tempfile.mkdtemp(prefix="llmdock-pg-"))
        self.datadir = self.base / "data"
        self.logfile = self.base / "server.log"
        self.port = 0
        self.running = False
        self._initialised = False
        atexit.register(self.destroy)

    # -- commands ------------------------------------------------------------------------------------

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # pg_ctl's server writes to the log file, never to our pipes, so capturing output cannot hang.
        return subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.base,
        )

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-n:]
        except OSError:
            return "(no server log)"

    # -- life cycle ----------------------------------------------------------------------------------

    def init(self) -> None:
        if self.as_root:
            os.chown(self.base, self._uid, self._gid)
        res = self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        )
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# llmdock tests\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 50\n"
                "timezone = 'UTC'\n"
                "logging_collector = off\n"
            )
        self._initialised = True

    def start(self) -> None:
        """Start the server (on the same port as before, if it ran already) and wait until it answers."""
        if self.running:
            return
        if not self._initialised:
            self.init()
        attempts = 1 if self.port else 3  # a fresh port may be taken between picking and binding it
        for attempt in range(attempts):
            if not self.port or attempt:
                self.port = free_port()
            res = self._run(
                "pg_ctl",
                "start",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-o",
                f"-p {self.port}",
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                timeout=START_TIMEOUT_S + 10,
            )
            if res.returncode == 0 and self._wait_ready():
                self.running = True
                return
            self._stop_quietly()
            if "could not bind" not in self.log_tail() and "in use" not in self.log_tail():
                break
        raise RuntimeError(
            f"PostgreSQL did not start on port {self.port}:\n{res.stdout}\n{res.stderr}\n{self.log_tail()}"
        )

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` ends open connections, as a crash or restart of the database would."""
        res = self._run(
            "pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w", timeout=STOP_TIMEOUT_S + 10
        )
        if res.returncode != 0 and self._postmaster_pid() is not None:
            raise RuntimeError(f"pg_ctl stop failed:\n{res.stdout}\n{res.stderr}\n{self.log_tail()}")
        self.running = False

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _stop_quietly(self) -> None:
        if not self._initialised:
            return
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate", "-w", timeout=20)
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        self.running = False

    def destroy(self) -> None:
        """Stop the server however it is doing and remove its files. Safe to call more than once."""
        self._stop_quietly()
        shutil.rmtree(self.base, ignore_errors=True)
        atexit.unregister(self.destroy)

    # -- databases -----------------------------------------------------------------------------------

    def dsn(self, dbname: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname or self.dbname}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database (``llmdock_test``)."""
        return self.dsn()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its SQLAlchemy URL (a fresh one for each test keeps them apart)."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"unsafe database name {name!r}")
        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


def start_pg_server() -> PgServer:
    """Init and start a server with its ``llmdock_test`` database; destroys it again if that fails."""
    server = PgServer()
    try:
        server.start()
        server.create_database(server.dbname)
    except BaseException:
        server.destroy()
        raise
    return server


def pg_server_or_skip() -> PgServer:
    """:func:`start_pg_server`, or skip (fail under ``LLMDOCK_REQUIRE_SERVICES=1``) if PostgreSQL is absent."""
    try:
        return start_pg_server()
    except PgUnavailable as exc:
        if os.environ.get("LLMDOCK_REQUIRE_SERVICES") == "1":
            pytest.fail(f"LLMDOCK_REQUIRE_SERVICES=1 but PostgreSQL cannot run: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL not available: {exc}")
