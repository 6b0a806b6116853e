"""A lean HTTP/1.1 client for the gateway's request/response calls to an upstream.

Why not aiohttp, which these calls used before: for one small JSON POST it spends about 150 µs of CPU on
request and response objects, cookie handling, timers and trace signals. Measured in one process against
the constant nginx upstream of bench/gateway_overhead.sh: 175-210 µs of CPU per call with aiohttp, 33 µs
with a kept-alive connection whose response httptools (uvicorn's HTTP parser) reads. Against the
gateway's budget of 0.5 ms added per request that difference is most of it.

What is done here by hand is small on purpose: write one request with a Content-Length body on a pooled
keep-alive connection (plain or TLS), and let httptools frame the response (Content-Length, chunked, or
until the connection closes). A kept-alive connection that the upstream closed before answering is
replaced once by a fresh one, as HTTP clients do. Streams and health checks stay on httpx.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class ConnectionClosed(ConnectionError):
    """The upstream closed the connection before a complete response."""


class InvalidResponse(Exception):
    """The upstream answered something that is not HTTP/1.1 (or a content encoding we cannot read)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses its response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.open = False
        self.received = False  # whether any byte of the current response arrived
        self.reusable = False
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.received = self.reusable = False
        self._status, self._headers, self._body = 0, {}, []
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.waiter is None or self.waiter.done():  # nothing was asked: the connection is out of step
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(InvalidResponse(f"upstream sent an invalid HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.waiter is None or self.waiter.done():
            return
        headers = self._headers
        if (
            self._status
            and "content-length" not in headers
            and "chunked" not in headers.get("transfer-encoding", "")
        ):
            self.on_message_complete()  # a body that ends with the connection
            return
        self.waiter.set_exception(
            ConnectionClosed(
                "the upstream closed the connection before answering" + (f": {exc}" if exc else "")
            )
        )

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim response: the real one follows
            self._status, self._headers, self._body = 0, {}, []
            return
        body = b"".join(self._body)
        encoding = self._headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):  # not asked for, but decoded if a server sends it anyway
            try:
                body = zlib.decompress(body, wbits=47)  # 47: gzip or zlib header, detected
            except zlib.error as exc:
                self._fail(InvalidResponse(f"upstream sent a broken {encoding} body: {exc}"))
                return
        elif encoding != "identity":
            self._fail(InvalidResponse(f"upstream sent a body in an unsupported encoding {encoding!r}"))
            return
        self.reusable = self.open and self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Response(self._status, self._headers, body))


def proxied(url: str) -> bool:
    """Whether the proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) send ``url`` via a proxy,
    which this pool does not speak (its callers then use httpx)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.netloc)


class ConnectionPool:
    """Kept-alive connections to one upstream (``base_url``), at most ``max_connections`` at once.

    Make it on the event loop that uses it: connections belong to that loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str],
        max_connections: int,
        connect_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self.connect_timeout_s = connect_timeout_s
        self._prefix = parts.path.rstrip("/")
        fixed = {"Host": parts.netloc.rpartition("@")[2], **headers}
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._heads: dict[str, bytes] = {}
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, path: str, body: bytes) -> Response:
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = (
                f"POST {self._prefix}{path} HTTP/1.1\r\n{self._fixed}Content-Length: ".encode()
            )
        request = b"%s%d\r\n\r\n%s" % (head, len(body), body)
        async with self._slots:
            while True:
                conn = self._take_idle()
                reused = conn is not None
                if conn is None:
                    conn = await self._connect()
                try:
                    response = await conn.send(request)
                except ConnectionClosed:
                    conn.close()
                    if reused and not conn.received:
                        continue  # closed by the upstream while idle: once more, on a fresh connection
                    raise
                except BaseException:
                    conn.close()  # cancelled or broken mid-response: what comes next on it is unknown
                    raise
                if conn.reusable:
                    self._idle.append(conn)
                else:
                    conn.close()
                return response

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()  # the most recently used: least likely to have been closed
            if conn.open:
                return conn
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await loop.create_connection(
                _Connection,
                self.host,
                self.port,
                ssl=self.ssl,
                server_hostname=self.host if self.ssl else None,
            )
        return conn

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
