"""Any OpenAI-compatible server as a backend: vLLM, Ollama, a hosted provider, or another llmdock.

Request/response calls go through a lean keep-alive pool (http1.py), streams and health checks through a
pooled ``httpx.AsyncClient``. Upstream failures become llmdock errors in one place (upstream_errors.py):
connection problems and timeouts -> BackendUnavailable (503), 5xx -> BackendError (502), 429 ->
RateLimited with the upstream's Retry-After, other 4xx -> InvalidRequest with the upstream's message.
What differs between chat and completion (path, body, how the answer reads) is the operation's codec.
Token counts come from the upstream's ``usage`` when it reports one, else an estimate (4 chars a token).
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

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
from llmdock.backends.http1 import ConnectionPool, proxied
from llmdock.backends.logprobs import Logprobs, Placer, TokenLogprob, placed
from llmdock.backends.operations import EMBEDDING
from llmdock.backends.upstream_errors import TRANSPORT_FAILURES, transport_error, upstream_error
from llmdock.errors import BackendError, ConfigError, InvalidRequest
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


class OpenAICompatBackend(Backend):
    kind = "openai_compat"
    Params = OpenAICompatParams
    params: OpenAICompatParams
    native_structured_output = True  # response_format, tools, tool_choice travel upstream in req.extra
    gives_logprobs = True  # asked of the upstream; one that answers without them is refused (400)

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
        self._proxied = proxied(self.params.base_url)
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
        self._where = f"upstream {self.params.base_url}"
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
            try:
                self._pool = ConnectionPool(
                    self.params.base_url,
                    headers=self._headers,
                    max_connections=self.params.max_connections,
                    connect_timeout_s=self.params.connect_timeout_s,
                    ssl_context=self._tls,
                )
            except ValueError as exc:  # not an http(s) URL
                raise ConfigError(str(exc), where=self.where("base_url")) from None
        return self._pool

    async def close(self) -> None:
        await self._client.aclose()
        if self._pool is not None:
            self._pool.close()

    async def health(self) -> None:
        try:
            resp = await self._client.get("/models", timeout=self.params.connect_timeout_s)
        except TRANSPORT_FAILURES as exc:
            raise transport_error(exc, self._where) from None
        if resp.status_code >= 500:
            raise BackendError(f"health check answered {resp.status_code}", where=self._where)

    def prepare(self, req: GenerationRequest) -> None:
        req.prompt_text = req.op.text_of(req)
        req.n_prompt_tokens = self.count_tokens(req.prompt_text)
        req.stop = list(req.params.stop)
        req.params.with_defaults(self.params.defaults)
        self.check_window(req)

    def _body(self, req: GenerationRequest, stream: bool) -> dict[str, Any]:
        p = req.params
        op = req.op
        body: dict[str, Any] = {
            "model": self.upstream_model,
            "stream": stream,
            op.param: getattr(req, op.param),
        }
        for name in ("max_tokens", "temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(p, name)
            if value is not None:
                body[name] = value
        if req.stop:
            body["stop"] = req.stop
        if req.logprobs is not None:
            if stream and req.echo:
                raise InvalidRequest(
                    f"model {self.name!r} (an upstream) cannot stream an echoed prompt's log-probabilities: "
                    "set stream false, or leave out echo",
                    param="echo",
                )
            body.update(op.logprobs_fields(req))
        body.update(req.extra)
        return body

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return (await self._exchange(path, body))[0]

    async def _exchange(self, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], Mapping[str, str]]:
        """The answer's JSON and its headers."""
        # The request/response calls go through a lean keep-alive pool (backends/http1.py, where the CPU
        # it saves per request is measured) unless a proxy is configured; streams and health checks use httpx.
        try:
            if self._proxied:
                resp = await self._client.post(path, content=orjson.dumps(body), headers=self._headers)
                if resp.status_code != 200:
                    raise upstream_error(resp.status_code, resp.text, resp.headers, self._where)
                content, headers = resp.content, dict(resp.headers)
            else:
                async with asyncio.timeout(self.params.timeout_s):
                    answer = await self._connections().post(path, orjson.dumps(body))
                if answer.status != 200:
                    text = answer.body.decode(errors="replace")
                    raise upstream_error(answer.status, text, answer.headers, self._where)
                content, headers = answer.body, answer.headers
        except TRANSPORT_FAILURES as exc:
            raise transport_error(exc, self._where) from None
        data: dict[str, Any] = orjson.loads(content)
        return data, headers

    async def generate(self, req: GenerationRequest) -> Generation:
        data, headers = await self._exchange(req.op.upstream_path, self._body(req, stream=False))
        choice = data["choices"][0]
        text, tool_calls = req.op.read_choice(choice)
        finish = choice.get("finish_reason") or "stop"
        if tool_calls:
            # Tool calls travel in llmdock's canonical text form; the structured stage validates them.
            text, finish = tool_calls_text(tool_calls), "tool_calls"
        logprobs = None
        if req.logprobs is not None:
            text, logprobs = self._logprobs(req, choice, text or "")
        usage = data.get("usage") or {}
        return Generation(
            text=text or "",
            prompt_tokens=int(usage.get("prompt_tokens", req.n_prompt_tokens)),
            completion_tokens=int(usage.get("completion_tokens", self.count_tokens(text or ""))),
            finish_reason=finish,
            logprobs=logprobs,
            served=served_by(data, headers),
        )

    def _logprobs(self, req: GenerationRequest, choice: dict[str, Any], text: str) -> tuple[str, Logprobs]:
        """The upstream's log-probabilities; with echo, the answer's text without the prompt it starts with."""
        tokens = self._read_logprobs(req, choice)
        if not req.echo:
            return text, Logprobs(placed(tokens), text)
        prompt = req.prompt_text
        answer = text[len(prompt) :] if text.startswith(prompt) else text
        return answer, Logprobs(tokens, answer, sum(1 for t in tokens if t.offset < len(prompt)))

    def _read_logprobs(self, req: GenerationRequest, choice: dict[str, Any]) -> list[TokenLogprob]:
        tokens = req.op.read_logprobs(choice)
        if tokens is None:
            raise InvalidRequest(
                f"model {self.name!r}: {self._where} answered without the log-probabilities asked for",
                param="logprobs",
            )
        return tokens

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        op = req.op
        try:
            async with self._client.stream(
                "POST", op.upstream_path, content=orjson.dumps(self._body(req, stream=True))
            ) as resp:
                if resp.status_code != 200:
                    answer = (await resp.aread()).decode(errors="replace")
                    raise upstream_error(resp.status_code, answer, resp.headers, self._where)
                calls: dict[int, dict[str, Any]] = {}  # tool-call deltas, joined by index
                placer = Placer() if req.logprobs is not None else None  # offsets into the answer
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
                        raise BackendError(f"upstream stream error: {event['error']}", where=self._where)
                    if not event.get("choices"):
                        continue
                    choice = event["choices"][0]
                    text, call_deltas = op.read_delta(choice)
                    logprobs = placer.place(self._read_logprobs(req, choice)) if placer and text else None
                    for call in call_deltas:
                        _join_call_delta(calls, call)
                    finish = choice.get("finish_reason")
                    if calls and finish:
                        # The calls are complete: they go on as one chunk in the canonical text form.
                        yield StreamChunk(tool_calls_text(list(calls.values())), "tool_calls")
                        calls.clear()
                    elif hold and not finish:
                        held.append(text or "")
                    else:
                        yield StreamChunk("".join(held) + (text or ""), finish, logprobs=logprobs)
                        held.clear()
        except TRANSPORT_FAILURES as exc:
            raise transport_error(exc, self._where) from None

    async def embed(self, texts: list[str]) -> EmbeddingResult:
        data = await self._post(
            EMBEDDING.upstream_path, {"model": self.upstream_model, EMBEDDING.param: texts}
        )
        vectors = [item["embedding"] for item in sorted(data["data"], key=lambda d: d["index"])]
        usage = data.get("usage") or {}
        return EmbeddingResult(vectors, int(usage.get("prompt_tokens", 0)))


_VERSION_HEADER = re.compile(r"(?:^|-)(?:model|version|fingerprint)(?:-|$)")


def served_by(data: dict[str, Any], headers: Mapping[str, str]) -> dict[str, str]:
    """What the upstream says answered: the body's ``model`` (a hosted name resolves to a dated snapshot) and
    ``system_fingerprint``, and headers naming a model, version or fingerprint (``openai-model``,
    ``x-model-version``…); at most 8 headers, 200 characters each."""
    found = {
        name: str(data[k])[:200]
        for k, name in (("model", "upstream_model"), ("system_fingerprint", "system_fingerprint"))
        if data.get(k)
    }
    named = sorted(n for n in headers if _VERSION_HEADER.search(n.lower()))[:8]
    return found | {f"header.{n.lower()}": str(headers[n])[:200] for n in named}


def _join_call_delta(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """Add one streamed tool-call delta (name once, arguments in pieces) to the calls seen so far."""
    call = calls.setdefault(int(delta.get("index", 0)), {"function": {"name": "", "arguments": ""}})
    fn = delta.get("function") or {}
    call["function"]["name"] += fn.get("name") or ""
    call["function"]["arguments"] += fn.get("arguments") or ""
