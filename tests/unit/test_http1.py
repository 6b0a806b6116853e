"""The upstream connection pool against a scripted HTTP server on loopback: framing, keep-alive, failures."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from llmdock.backends.http1 import ConnectionClosed, ConnectionPool, InvalidResponse

# A handler gets the request head and body and writes the answer; it returns False to close the connection.
Handler = Callable[[bytes, bytes, asyncio.StreamWriter], Awaitable[bool]]


class Scripted:
    """A loopback HTTP server whose answers the test writes byte by byte."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if not await self.handler(head, body, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def answer(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def echo(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer(b"echo " + body))
    return True


@pytest.fixture
async def pool_for() -> AsyncIterator[Callable[[str], ConnectionPool]]:
    pools: list[ConnectionPool] = []

    def make(url: str, max_connections: int = 10) -> ConnectionPool:
        pools.append(
            ConnectionPool(
                url,
                headers={"Authorization": "Bearer k"},
                max_connections=max_connections,
                connect_timeout_s=2,
            )
        )
        return pools[-1]

    yield make
    for pool in pools:
        pool.close()


async def test_requests_reuse_one_kept_alive_connection(pool_for: Callable[..., ConnectionPool]) -> None:
    async with Scripted(echo) as server:
        pool = pool_for(server.url)
        for i in range(5):
            resp = await pool.post("/chat/completions", b"%d" % i)
            assert (resp.status, resp.body) == (200, b"echo %d" % i)
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert b"\r\nAuthorization: Bearer k\r\n" in first
        assert b"\r\nHost: 127.0.0.1:" in first


async def test_chunked_and_close_delimited_bodies_are_read_whole(
    pool_for: Callable[..., ConnectionPool],
) -> None:
    async def chunked(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        return True

    async def until_close(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of ")
        await writer.drain()
        writer.write(b"it")
        return False

    async with Scripted(chunked) as server:
        assert (await pool_for(server.url).post("/x", b"")).body == b"hello world"
    async with Scripted(until_close) as server:
        pool = pool_for(server.url)
        assert (await pool.post("/x", b"")).body == b"all of it"
        assert (await pool.post("/x", b"")).body == b"all of it"
        assert server.connections == 2  # Connection: close is honoured


async def test_a_kept_alive_connection_closed_while_idle_is_replaced(
    pool_for: Callable[..., ConnectionPool],
) -> None:
    async def once_per_connection(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(b"ok"))  # says keep-alive, then closes (as a server's idle timeout does)
        return False

    async with Scripted(once_per_connection) as server:
        pool = pool_for(server.url)
        for _ in range(3):
            assert (await pool.post("/x", b"")).body == b"ok"
            await asyncio.sleep(0.05)
        assert server.connections == 3


async def test_a_request_on_a_connection_the_upstream_drops_unanswered_is_sent_again_once(
    pool_for: Callable[..., ConnectionPool],
) -> None:
    served: dict[int, int] = {}

    async def one_answer_per_connection(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        n = served[id(writer)] = served.get(id(writer), 0) + 1
        if n > 1:  # like a server past its keep-alive request limit: hangs up without answering
            return False
        writer.write(answer(body))
        return True

    async with Scripted(one_answer_per_connection) as server:
        pool = pool_for(server.url)
        assert [(await pool.post("/x", b"%d" % i)).body for i in range(3)] == [b"0", b"1", b"2"]
        assert server.connections == 3
        assert len(server.requests) == 5  # requests 1 and 2 went out twice: first on a connection that died


async def test_a_connection_that_dies_before_answering_is_an_error(
    pool_for: Callable[..., ConnectionPool],
) -> None:
    async def hang_up(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        return False

    async with Scripted(hang_up) as server:
        with pytest.raises(ConnectionClosed):
            await pool_for(server.url).post("/x", b"")


async def test_garbage_and_unknown_encodings_are_invalid_responses(
    pool_for: Callable[..., ConnectionPool],
) -> None:
    async def garbage(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        return True

    async def brotli(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(b"....", "Content-Encoding: br"))
        return True

    for handler in (garbage, brotli):
        async with Scripted(handler) as server:
            with pytest.raises(InvalidResponse):
                await pool_for(server.url).post("/x", b"")


async def test_gzip_bodies_are_decoded_and_headers_kept(pool_for: Callable[..., ConnectionPool]) -> None:
    async def zipped(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            answer(
                gzip.compress(b'{"a": 1}'), "Content-Encoding: gzip", "Retry-After: 7", status="429 Too Many"
            )
        )
        return True

    async with Scripted(zipped) as server:
        resp = await pool_for(server.url).post("/x", b"")
        assert (resp.status, resp.body, resp.headers["retry-after"]) == (429, b'{"a": 1}', "7")


async def test_a_cancelled_request_does_not_leave_its_connection_in_the_pool(
    pool_for: Callable[..., ConnectionPool],
) -> None:
    async def slow(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        if body == b"slow":
            await asyncio.sleep(0.3)
        writer.write(answer(body))
        return True

    async with Scripted(slow) as server:
        pool = pool_for(server.url)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await pool.post("/x", b"slow")
        assert (await pool.post("/x", b"fast")).body == b"fast"  # not the late answer to "slow"
        assert server.connections == 2


async def test_at_most_max_connections_are_open(pool_for: Callable[..., ConnectionPool]) -> None:
    async def slowly(head: bytes, body: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(answer(body))
        return True

    async with Scripted(slowly) as server:
        pool = pool_for(server.url, max_connections=2)
        bodies = await asyncio.gather(*(pool.post("/x", b"%d" % i) for i in range(8)))
        assert sorted(r.body for r in bodies) == sorted(b"%d" % i for i in range(8))
        assert server.connections == 2


async def test_an_unreachable_upstream_raises_oserror(pool_for: Callable[..., ConnectionPool]) -> None:
    async with Scripted(echo) as server:
        url = server.url
    with pytest.raises(ConnectionRefusedError):
        await pool_for(url).post("/x", b"")
