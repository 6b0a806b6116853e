"""Targets: what a suite asks. In process, a case runs through the same pipeline object a gateway request does
(prompt template, guards, structured output, the routed backend; the cache is left out unless the target
asks for it); or it goes to any OpenAI-compatible URL.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from llmdock.backends.http1 import ConnectionPool, InvalidResponse, proxied
from llmdock.errors import InvalidRequest
from llmdock.evaluate.case import Case, Output
from llmdock.evaluate.suite import TargetSpec

if TYPE_CHECKING:
    import httpx

    from llmdock.backends.base import Backend
    from llmdock.config import Settings
    from llmdock.pipeline.env import StageEnv
    from llmdock.pipeline.runner import Pipeline
    from llmdock.prompts import PromptResolver


TIMEOUT_S = 600.0  # one answer, from the request to its last byte (a slow model under a full batch)
CONNECT_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 1024  # a cap only: the runner's concurrency bounds the cases in flight, one connection each


class Serving(Protocol):
    """What an in-process target needs of the runtime (``llmdock.runtime.Runtime`` is one)."""

    settings: Settings
    prompts: PromptResolver | None
    stage_env: StageEnv

    def backend(self, model: str) -> Backend: ...

    def pipeline_with(self, names: list[str]) -> Pipeline: ...


class Target(Protocol):
    label: str

    async def answer(self, case: Case, seed: int, max_tokens: int) -> Output: ...

    async def close(self) -> None: ...


def messages_of(case: Case, system: str | None) -> list[dict[str, Any]]:
    messages = list(case.messages) if case.messages is not None else []
    if case.input is not None:
        messages.append({"role": "user", "content": case.input})
    if system and not any(m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": system})
    return messages


def sampling(spec: TargetSpec, seed: int, max_tokens: int) -> dict[str, Any]:
    """The suite's max_tokens and the repeat's seed, then the target's params (checked when the suite loads)."""
    return {"max_tokens": max_tokens, "seed": seed, **spec.params}


def parse_prompt_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``name@label`` or ``name/version`` or ``name`` (its latest version)."""
    if "@" in ref:
        name, label = ref.split("@", 1)
        return name, None, label
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        if version.isdigit():
            return name, int(version), None
    return ref, None, None


class UrlTarget:
    """Any OpenAI-compatible endpoint (another llmdock, vLLM, a hosted provider).

    Its calls go through the gateway's own lean keep-alive pool (:mod:`llmdock.backends.http1`: one
    connection per case in flight, reused from case to case, the body written and read with orjson), the
    client the gateway uses for its upstreams; through httpx only when a proxy variable covers the URL
    (httpx speaks to proxies, the pool does not)."""

    def __init__(self, spec: TargetSpec) -> None:
        assert spec.url is not None
        assert spec.model is not None
        self.spec = spec
        self.label = spec.label
        self.base_url = spec.url.rstrip("/")
        key = os.environ.get(spec.api_key_env, "unused")
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.pool: ConnectionPool | None = None  # made on the running loop, at the first case
        self.client: httpx.AsyncClient | None = None  # instead, when a proxy is configured

    async def answer(self, case: Case, seed: int, max_tokens: int) -> Output:
        body = {
            "model": self.spec.model,
            "messages": messages_of(case, self.spec.system),
            **sampling(self.spec, seed, max_tokens),
        }
        if self.spec.prompt:
            name, version, label = parse_prompt_ref(self.spec.prompt)
            body.update(
                prompt_id=name, prompt_version=version, prompt_label=label, prompt_variables=case.vars
            )
        t0 = time.perf_counter()
        try:
            status, headers, content = await self._post(orjson.dumps(body))
        except (OSError, InvalidResponse) as exc:  # refused, reset, timed out; or not an HTTP answer
            error = f"{self.spec.url}: {str(exc) or type(exc).__name__}"
            return Output(latency_ms=(time.perf_counter() - t0) * 1000, error=error)
        latency = (time.perf_counter() - t0) * 1000
        data = json_body(headers, content)
        if status != 200 or not isinstance(data, dict) or not data.get("choices"):
            return Output(latency_ms=latency, error=failure(status, data, content))
        usage = data.get("usage") or {}
        return Output(
            text=data["choices"][0]["message"].get("content") or "",
            latency_ms=latency,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            trace_id=headers.get("x-llmdock-trace-id", ""),
            served={"model": data.get("model", self.spec.model), "url": self.spec.url},
            messages=None if self.spec.prompt else body["messages"],  # a template is rendered over there
        )

    async def _post(self, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        """POST /chat/completions: (status, headers with lower-case names, body)."""
        if self.pool is None and self.client is None:
            if proxied(self.base_url):
                import httpx  # only here: a url-only run through no proxy never loads it

                self.client = httpx.AsyncClient(
                    base_url=self.base_url, headers=self.headers, timeout=TIMEOUT_S
                )
            else:
                self.pool = ConnectionPool(
                    self.base_url,
                    headers=self.headers,
                    max_connections=MAX_CONNECTIONS,
                    connect_timeout_s=CONNECT_TIMEOUT_S,
                )
        if self.client is not None:
            import httpx

            try:
                resp = await self.client.post("/chat/completions", content=body)
            except httpx.HTTPError as exc:
                raise OSError(str(exc) or type(exc).__name__) from None
            return resp.status_code, resp.headers, resp.content
        assert self.pool is not None
        async with asyncio.timeout(TIMEOUT_S):
            got = await self.pool.post("/chat/completions", body)
        return got.status, got.headers, got.body

    async def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.client is not None:
            await self.client.aclose()


def json_body(headers: Mapping[str, str], content: bytes) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    if not headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def failure(status: int, data: Any, content: bytes) -> str:
    """One line for an answer that is not a chat completion: the server's error message where it gave one."""
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    if status == 200 and not message:
        return f"HTTP 200 without a chat completion: {content[:200].decode(errors='replace')}"
    return f"HTTP {status}: {message or content[:200].decode(errors='replace')}"


def build_target(spec: TargetSpec, serving: Serving | None) -> Target:
    if spec.url is not None:
        return UrlTarget(spec)
    if serving is None:
        raise InvalidRequest(f"target {spec.label!r} runs in process and needs the runtime")
    from llmdock.evaluate.local_target import LocalTarget  # the pipeline's modules: only for these

    return LocalTarget(spec, serving)
