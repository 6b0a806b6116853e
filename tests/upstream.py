"""A controllable OpenAI-compatible upstream on a real loopback socket, for routing tests.

Each instance runs uvicorn in a thread. ``mode`` decides how it answers: ``ok`` (a chat completion whose
text names the upstream), ``500``, ``429`` (with Retry-After), ``policy`` (content-filter refusal),
``context`` (context_length_exceeded), ``slow`` (``delay`` seconds then ok), ``cut`` (a stream that dies
after its first token), ``script`` (answers ``replies`` in turn, the last one repeating; each reply is a
message: ``{"content": ...}`` or ``{"tool_calls": [...]}``, optionally with ``finish_reason``). Every
request body is kept in ``bodies``. ``tls=(cert, key)`` serves HTTPS. ``stop()`` closes the socket,
so later requests get connection refused, as from a crashed server. ``port`` fixes the port (a restarted
upstream comes back where it was).

``python -m tests.upstream NAME PORT`` runs one as a process of its own (for fault benches that kill or
stop it); SIGUSR1 switches it to ``500``, SIGHUP to ``cut``, SIGUSR2 back to ``ok``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Upstream:
    def __init__(
        self,
        name: str,
        mode: str = "ok",
        delay: float = 0.0,
        replies: list[dict[str, Any]] | None = None,
        tls: tuple[Path, Path] | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.mode = mode
        self.delay = delay
        self.replies = list(replies or [])
        self.bodies: list[dict[str, Any]] = []
        self.fingerprint = ""  # when set, answers carry it as system_fingerprint (and a version header)
        self.hits = 0
        self.last_authorization: str | None = None
        self.port = port or _free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        cert, key = tls or (None, None)
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="error",
            lifespan="off",
            ssl_certfile=cert,
            ssl_keyfile=key,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"upstream {name} did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    async def _models(self, _: Request) -> Response:
        if self.mode == "500":
            return Response(status_code=500)
        return Response(orjson.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}))

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        return Response(
            orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
        )

    async def _chat(self, request: Request) -> Response:
        self.hits += 1
        self.last_authorization = request.headers.get("authorization")
        body = orjson.loads(await request.body())
        self.bodies.append(body)
        mode = self.mode
        if mode == "script":
            return self._scripted(body)
        if mode == "500":
            return self._error(500, "server_error", f"{self.name} is broken")
        if mode == "429":
            return self._error(429, "rate_limit_exceeded", f"{self.name} is busy", {"Retry-After": "30"})
        if mode == "policy":
            return self._error(400, "content_filter", f"{self.name} refuses this content")
        if mode == "context":
            return self._error(400, "context_length_exceeded", f"{self.name}: prompt too long")
        if self.delay:
            await asyncio.sleep(self.delay)
        text = f"reply from {self.name}"
        if body.get("stream"):
            return StreamingResponse(self._stream(text), media_type="text/event-stream")
        return Response(
            orjson.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
                    **({"system_fingerprint": self.fingerprint} if self.fingerprint else {}),
                }
            ),
            media_type="application/json",
            headers={"x-model-version": self.fingerprint} if self.fingerprint else None,
        )

    async def _stream(self, text: str):  # type: ignore[no-untyped-def]
        for i, word in enumerate(text.split(" ")):
            chunk = {
                "choices": [
                    {"index": 0, "delta": {"content": word if i == 0 else " " + word}, "finish_reason": None}
                ]
            }
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            if self.mode == "cut":  # the upstream dies after its first token
                await asyncio.sleep(0.05)
                raise ConnectionResetError("upstream died mid-stream")
        yield b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        yield b"data: [DONE]\n\n"

    def _scripted(self, body: dict[str, Any]) -> Response:
        reply = dict(self.replies[min(len(self.bodies), len(self.replies)) - 1])
        finish = reply.pop("finish_reason", "tool_calls" if reply.get("tool_calls") else "stop")
        message = {"role": "assistant", "content": None, **reply}
        if body.get("stream"):
            return StreamingResponse(self._stream_message(message, finish), media_type="text/event-stream")
        usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return Response(
            orjson.dumps({"id": "x", "object": "chat.completion", "choices": [choice], "usage": usage}),
            media_type="application/json",
        )

    async def _stream_message(self, message: dict[str, Any], finish: str):  # type: ignore[no-untyped-def]
        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        yield event({"role": "assistant", "content": ""})
        if message.get("content"):
            text = message["content"]
            for start in range(0, len(text), 5):
                yield event({"content": text[start : start + 5]})
        for i, call in enumerate(message.get("tool_calls") or []):
            fn = call["function"]
            head = {"index": i, "id": call.get("id", f"up_{i}"), "type": "function"}
            yield event({"tool_calls": [{**head, "function": {"name": fn["name"], "arguments": ""}}]})
            args = fn["arguments"]
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                yield event({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        yield event({}, finish)
        yield b"data: [DONE]\n\n"


def _serve_as_process(name: str, port: int) -> None:
    up = Upstream(name, port=port)
    modes = {signal.SIGUSR1: "500", signal.SIGHUP: "cut", signal.SIGUSR2: "ok"}
    for signum, mode in modes.items():
        signal.signal(signum, lambda _s, _f, mode=mode: setattr(up, "mode", mode))
    signal.signal(signal.SIGTERM, lambda _s, _f: setattr(up.server, "should_exit", True))
    print(f"upstream {name} on {up.url}", flush=True)
    while up.thread.is_alive():
        up.thread.join(timeout=0.5)


if __name__ == "__main__":
    _serve_as_process(sys.argv[1], int(sys.argv[2]))
