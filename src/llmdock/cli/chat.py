"""``llmdock chat "question"``: ask a model and stream the answer to the terminal.

Runs the same pipeline in-process (the request is traced like any other), or against a running gateway
with ``--url``.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from llmdock.cli.options import CONFIG
from llmdock.config import load_settings


@dataclass(frozen=True, slots=True)
class Ask:
    """One question, as asked of a model in process or of a gateway."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float | None
    seed: int | None


def chat(
    question: str = typer.Argument(..., help="What to ask"),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name [settings' default_model]"),
    system: str | None = typer.Option(None, "--system", "-s", help="System prompt"),
    turns: list[str] = typer.Option(
        [], "--turn", help="A message before the question, ROLE:TEXT (e.g. tool:RESULT); repeatable"
    ),
    max_tokens: int = typer.Option(256, help="Most tokens to generate"),
    temperature: float | None = typer.Option(None, help="Sampling temperature (model default if unset)"),
    seed: int | None = typer.Option(None, help="Fixed seed for reproducible sampling"),
    url: str | None = typer.Option(
        None, help="Ask a running gateway (e.g. http://127.0.0.1:8000/v1) instead"
    ),
    config: Path | None = CONFIG,
) -> None:
    """Ask a question; the answer streams as it is generated."""
    settings = load_settings(config)
    messages = (
        ([{"role": "system", "content": system}] if system else [])
        + [_turn(t) for t in turns]
        + [{"role": "user", "content": question}]
    )
    ask = Ask(model or settings.default_model, messages, max_tokens, temperature, seed)
    if url:
        _chat_remote(url, ask)
    else:
        asyncio.run(_chat_local(settings, ask))
    sys.stdout.write("\n")


def _turn(text: str) -> dict[str, str]:
    from llmdock.errors import InvalidRequest

    role, sep, content = text.partition(":")
    if not sep or role not in ("system", "user", "assistant", "tool", "developer"):
        raise InvalidRequest(
            f"--turn {text[:40]!r}: give ROLE:TEXT, ROLE one of system, user, assistant, tool, developer",
            param="turn",
        )
    return {"role": role, "content": content}


async def _chat_local(settings: object, ask: Ask) -> None:
    from llmdock.backends.base import GenerationRequest, SamplingParams
    from llmdock.config import Settings
    from llmdock.pipeline.context import RequestContext
    from llmdock.runtime import Runtime

    assert isinstance(settings, Settings)
    runtime = Runtime(settings)
    try:
        backend = runtime.backend(ask.model)
        params = SamplingParams(max_tokens=ask.max_tokens, temperature=ask.temperature, seed=ask.seed)
        ctx = RequestContext(
            "chat",
            ask.model,
            backend,
            request=GenerationRequest("chat", params, messages=ask.messages),
            stream=True,
            source="cli",
        )
        chunks = await runtime.pipeline.prepare_stream(ctx)
        async for chunk in chunks:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
    finally:
        await runtime.close()


def _chat_remote(url: str, ask: Ask) -> None:
    import httpx
    import orjson

    from llmdock.errors import BackendUnavailable, LlmdockError

    body: dict[str, object] = {
        "model": ask.model,
        "messages": ask.messages,
        "max_tokens": ask.max_tokens,
        "stream": True,
    }
    if ask.temperature is not None:
        body["temperature"] = ask.temperature
    if ask.seed is not None:
        body["seed"] = ask.seed
    try:
        with httpx.stream("POST", url.rstrip("/") + "/chat/completions", json=body, timeout=600) as resp:
            if resp.status_code != 200:
                resp.read()
                raise LlmdockError(resp.json().get("error", {}).get("message", resp.text), where=url)
            for line in resp.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = orjson.loads(line[6:])
                if "error" in event:
                    raise LlmdockError(str(event["error"].get("message")), where=url)
                for choice in event.get("choices", []):
                    sys.stdout.write(choice.get("delta", {}).get("content") or "")
                    sys.stdout.flush()
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"cannot reach the gateway: {exc}", where=url) from None
