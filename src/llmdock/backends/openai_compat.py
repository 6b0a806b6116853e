"""Any OpenAI-compatible server as a backend: vLLM, Ollama, a hosted provider, or another llmdock.

One pooled keep-alive ``httpx.AsyncClient`` per model. Upstream failures become llmdock errors:
connection problems and timeouts -> BackendUnavailable (503), 5xx -> BackendError (502), 429 ->
RateLimited with the upstream's Retry-After, other 4xx -> InvalidRequest with the upstream's message.
Token counts come from the upstream's ``usage`` when it reports one, else an estimate (4 chars a token).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import Field

from llmdock.backends.base import (
    Backend,
    BackendParams,
    EmbeddingResult,
    Generation,
    GenerationRequest,
    StreamChunk,
    tool_calls_text,
)
from llmdock.backends.http1 import ConnectionClosed, ConnectionPool, InvalidResponse
from llmdock.errors import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ContextWindowExceeded,
    GuardBlocked,
    InvalidRequest,
    LlmdockError,
    RateLimited,
)
from llmdock.privacy.provider_secrets import SECRET_PREFIX, resolve_secret


class OpenAICompatParams(BackendParams):
    base_url: str = Field(description="e.g. http://127.0.0.1:8001/v1")
    upstream_model: str | None = Field(default=None, description="model name upstream; default = ours")
    api_key: str | None = Field(
        default=None, description="the key, or secret:NAME (llmdock secrets set NAME)"
    )
    api_key_env: str | None = Field(default=None, description="read the key from this env variable")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=600.0, gt=0)
    max_connections: int = Field(default=100, gt=0)
    defaults: dict[str, Any] = Field(default_factory=dict)
    tls_ca_file: str | None = Field(
        default=None, description="CA bundle (PEM) to trust for an https upstream"
    )
    tls_verify: bool = Field(default=True, description="false: accept any certificate (testing only)")


def _proxied(url: str) -> bool:
    """Whether the proxy variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) send ``url`` via a proxy."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.netloc)


class OpenAICompatBackend(Backend):
    kind = "openai_compat"
    Params = OpenAICompatParams
    params: OpenAICompatParams
    native_structured_output = True  # response_format, tools, tool_choice travel upstream in req.extra

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        key = self.params.api_key or (
            os.environ.get(self.params.api_key_env, "") if self.params.api_key_env else ""
        )
        if key and key.startswith(
            SECRET_PREFIX
        ):  # a credential kept encrypted in the store (llmdock secrets)
            key = resolve_secret(self.settings, key.removeprefix(SECRET_PREFIX), where=self.where("api_key"))
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._tls = self._tls_context()
        # Through an HTTP(S)_PROXY every call goes via httpx (which speaks to proxies); direct ones use the pool.
        self._proxied = _proxied(self.params.base_url)
        self._client = httpx.AsyncClient(
            base_url=self.params.base_url.rstrip("/"),
            headers=headers,
            verify=self._tls,
            timeout=httpx.Timeout(self.params.timeout_s, connect=self.params.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=self.params.max_connections,
                max_keepalive_connections=self.params.max_connections,
            ),
        )
        self.upstream_model = self.params.upstream_model or self.name
        self._headers = {"Content-Type": "application/json", **headers}
        self._pool: ConnectionPool | None = None  # made on the serving loop, at first use
        self.loaded = True

    def _tls_context(self) -> ssl.SSLContext:
        """One TLS policy for the pool and httpx: the system's CAs (or ``tls_ca_file``), verified hosts."""
        ca = self.params.tls_ca_file
        if ca is not None and not Path(ca).expanduser().is_file():
            raise ConfigError(f"CA file {ca!r} does not exist", where=self.where("tls_ca_file"))
        context = ssl.create_default_context(cafile=str(Path(ca).expanduser()) if ca else None)
        if not self.params.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connections(self) -> ConnectionPool:
        if self._pool is None:
            self._pool = ConnectionPool(
                self.params.base_url,
                headers=self._headers,
                max_connections=self.params.max_connections,
                connect_timeout_s=self.params.connect_timeout_s,
                ssl_context=self._tls,
            )
        return self._pool

    async def close(self) -> None:
        await self._client.aclose()
        if self._pool is not None:
            self._pool.close()

    async def health(self) -> None:
        where = f"upstream {self.params.base_url}"
        try:
            resp = await self._client.get("/models", timeout=self.params.connect_timeout_s)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"health check failed: {exc!r}", where=where) from None
        if resp.status_code >= 500:
            raise BackendError(f"health check answered {resp.status_code}", where=where)

    def prepare(self, req: GenerationRequest) -> None:
        if req.operation == "chat":
            req.prompt_text = "\n".join(str(m.get("content") or "") for m in req.messages or [])
        else:
            req.prompt_text = req.prompt or ""
        req.n_prompt_tokens = self.count_tokens(req.prompt_text)
        req.stop = list(req.params.stop)
        req.params.with_defaults(self.params.defaults)
        self.check_window(req)

    def _body(self, req: GenerationRequest, stream: bool) -> dict[str, Any]:
        p = req.params
        body: dict[str, Any] = {"model": self.upstream_model, "stream": stream}
        if req.operation == "chat":
            body["messages"] = req.messages
        else:
            body["prompt"] = req.prompt
        for name in ("max_tokens", "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(p, name)
            if value is not None:
                body[name] = value
        if req.stop:
            body["stop"] = req.stop
        body.update(req.extra)
        return body

    def _path(self, req: GenerationRequest) -> str:
        return "/chat/completions" if req.operation == "chat" else "/completions"

    def _error(self, status: int, text: str, headers: Mapping[str, str]) -> LlmdockError:
        try:
            err = orjson.loads(text)["error"]
            message = str(err["message"])
            code = f"{err.get('code') or ''} {err.get('type') or ''}"
        except (orjson.JSONDecodeError, KeyError, TypeError):
            message, code = text[:300], ""
        where = f"upstream {self.params.base_url}"
        if "context_length_exceeded" in code:
            return ContextWindowExceeded(f"upstream: {message}", where=where)
        if "content_filter" in code or "content_policy" in code:
            return GuardBlocked(f"upstream refused on content policy: {message}", where=where)
        if status == 429:
            return RateLimited(message, where=where, headers={"Retry-After": headers.get("retry-after", "1")})
        if status >= 500:
            return BackendError(f"upstream answered {status}: {message}", where=where)
        return InvalidRequest(f"upstream rejected the request ({status}): {message}", where=where)

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        # The request/response calls go through a lean keep-alive pool (backends/http1.py, where the CPU
        # it saves per request is measured); streams and health checks stay on httpx.
        where = f"upstream {self.params.base_url}"
        if self._proxied:
            return await self._post_via_httpx(path, body)
        try:
            async with asyncio.timeout(self.params.timeout_s):
                resp = await self._connections().post(path, orjson.dumps(body))
        except TimeoutError:
            raise BackendUnavailable("upstream timed out", where=where) from None
        except InvalidResponse as exc:
            raise BackendError(str(exc), where=where) from None
        except (ConnectionClosed, OSError) as exc:
            raise BackendUnavailable(
                f"upstream unreachable: {str(exc) or type(exc).__name__}", where=where
            ) from None
        if resp.status != 200:
            raise self._error(resp.status, resp.body.decode(errors="replace"), resp.headers)
        data: dict[str, Any] = orjson.loads(resp.body)
        return data

    async def _post_via_httpx(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        where = f"upstream {self.params.base_url}"
        try:
            resp = await self._client.post(path, content=orjson.dumps(body), headers=self._headers)
        except httpx.TimeoutException:
            raise BackendUnavailable("upstream timed out", where=where) from None
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"upstream unreachable: {exc!r}", where=where) from None
        if resp.status_code != 200:
            raise self._error(resp.status_code, resp.text, resp.headers)
        data: dict[str, Any] = orjson.loads(resp.content)
        return data

    async def generate(self, req: GenerationRequest) -> Generation:
        data = await self._post(self._path(req), self._body(req, stream=False))
        choice = data["choices"][0]
        text = choice["message"]["content"] if req.operation == "chat" else choice["text"]
        finish = choice.get("finish_reason") or "stop"
        if req.operation == "chat" and choice["message"].get("tool_calls"):
            # Tool calls travel in llmdock's canonical text form; the structured stage validates them.
            text, finish = tool_calls_text(choice["message"]["tool_calls"]), "tool_calls"
        usage = data.get("usage") or {}
        return Generation(
            text=text or "",
            prompt_tokens=int(usage.get("prompt_tokens", req.n_prompt_tokens)),
            completion_tokens=int(usage.get("completion_tokens", self.count_tokens(text or ""))),
            finish_reason=finish,
        )

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        where = f"upstream {self.params.base_url}"
        try:
            async with self._client.stream(
                "POST", self._path(req), content=orjson.dumps(self._body(req, stream=True))
            ) as resp:
                if resp.status_code != 200:
                    raise self._error(
                        resp.status_code, (await resp.aread()).decode(errors="replace"), resp.headers
                    )
                calls: dict[int, dict[str, Any]] = {}  # tool-call deltas, joined by index
                # When the answer may be tool calls, its text waits for the end (the structured stage buffers such
                # streams anyway): text beside calls is dropped, as in a non-streamed answer.
                hold = bool(req.extra.get("tools")) and req.extra.get("tool_choice") != "none"
                held: list[str] = []
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    event = orjson.loads(payload)
                    if "error" in event:
                        raise BackendError(f"upstream stream error: {event['error']}", where=where)
                    if not event.get("choices"):
                        continue
                    choice = event["choices"][0]
                    delta = choice.get("delta") or {}
                    for call in delta.get("tool_calls") or ():
                        _join_call_delta(calls, call)
                    text = delta.get("content") if req.operation == "chat" else choice.get("text")
                    finish = choice.get("finish_reason")
                    if calls and finish:
                        # The calls are complete: they go on as one chunk in the canonical text form.
                        yield StreamChunk(tool_calls_text(list(calls.values())), "tool_calls")
                        calls.clear()
                    elif hold and not finish:
                        held.append(text or "")
                    else:
                        yield StreamChunk("".join(held) + (text or ""), finish)
                        held.clear()
        except httpx.TimeoutException:
            raise BackendUnavailable("upstream timed out", where=where) from None
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"upstream unreachable: {exc}", where=where) from None

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        data = await self._post("/embeddings", {"model": self.upstream_model, "input": texts})
        vectors = [item["embedding"] for item in sorted(data["data"], key=lambda d: d["index"])]
        usage = data.get("usage") or {}
        return EmbeddingResult(vectors, int(usage.get("prompt_tokens", 0)))


def _join_call_delta(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """Add one streamed tool-call delta (name once, arguments in pieces) to the calls seen so far."""
    call = calls.setdefault(int(delta.get("index", 0)), {"function": {"name": "", "arguments": ""}})
    fn = delta.get("function") or {}
    call["function"]["name"] += fn.get("name") or ""
    call["function"]["arguments"] += fn.get("arguments") or ""
