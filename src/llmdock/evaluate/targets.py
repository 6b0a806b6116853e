"""Targets: what a suite asks. In process, a case runs through the same pipeline object a gateway request does
(prompt template, guards, structured output, the routed backend; the cache is left out unless the target
asks for it); or it goes to any OpenAI-compatible URL.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from llmdock.errors import InvalidRequest
from llmdock.evaluate.case import Case, Output
from llmdock.evaluate.suite import TargetSpec

if TYPE_CHECKING:
    from llmdock.backends.base import Backend
    from llmdock.config import Settings
    from llmdock.pipeline.env import StageEnv
    from llmdock.pipeline.runner import Pipeline
    from llmdock.prompts import PromptResolver


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
    """Any OpenAI-compatible endpoint (another llmdock, vLLM, a hosted provider)."""

    def __init__(self, spec: TargetSpec) -> None:
        assert spec.url is not None
        assert spec.model is not None
        self.spec = spec
        self.label = spec.label
        key = os.environ.get(spec.api_key_env, "unused")
        self.client = httpx.AsyncClient(
            base_url=spec.url.rstrip("/"), headers={"Authorization": f"Bearer {key}"}, timeout=600
        )

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
            resp = await self.client.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            return Output(latency_ms=(time.perf_counter() - t0) * 1000, error=f"{self.spec.url}: {exc}")
        latency = (time.perf_counter() - t0) * 1000
        data = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200:
            message = (data.get("error") or {}).get("message") if isinstance(data, dict) else None
            return Output(latency_ms=latency, error=f"HTTP {resp.status_code}: {message or resp.text[:200]}")
        usage = data.get("usage") or {}
        return Output(
            text=data["choices"][0]["message"].get("content") or "",
            latency_ms=latency,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            trace_id=resp.headers.get("x-llmdock-trace-id", ""),
            served={"model": data.get("model", self.spec.model), "url": self.spec.url},
            messages=None if self.spec.prompt else body["messages"],  # a template is rendered over there
        )

    async def close(self) -> None:
        await self.client.aclose()


def build_target(spec: TargetSpec, serving: Serving | None) -> Target:
    if spec.url is not None:
        return UrlTarget(spec)
    if serving is None:
        raise InvalidRequest(f"target {spec.label!r} runs in process and needs the runtime")
    from llmdock.evaluate.local_target import LocalTarget  # the pipeline's modules: only for these

    return LocalTarget(spec, serving)
