"""Conversation memory on a real ``llmdock serve`` in front of a stand-in OpenAI upstream, through the openai
SDK: the second request of a session reaches the upstream with the first exchange before it; another
session's request does not."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.integration.conftest import start_server, stop_server
from tests.upstream import Upstream

pytestmark = pytest.mark.server

CONFIG = """
include_builtin_models: false
default_model: remote
default_embedding_model: ""
pipeline: [preprocess, memory, generate, postprocess]
models:
  remote: {{backend: openai_compat, base_url: "{url}", upstream_model: m}}
"""


def test_the_second_request_of_a_session_carries_the_first_exchange(tmp_path: Path) -> None:
    up = Upstream("up", "script", replies=[{"content": "Noted: the door is blue."}, {"content": "Blue."}])
    (tmp_path / "llmdock.yaml").write_text(CONFIG.format(url=up.url))
    server = start_server(tmp_path, "--config", str(tmp_path / "llmdock.yaml"))
    try:
        client = openai.OpenAI(base_url=server.v1, api_key="none")

        def ask(session: str, text: str) -> str:
            done = client.chat.completions.create(
                model="remote",
                messages=[{"role": "user", "content": text}],
                extra_headers={"x-llmdock-session": session},
            )
            return done.choices[0].message.content or ""

        assert ask("a", "Remember: the door is blue.") == "Noted: the door is blue."
        assert ask("a", "What colour is the door?") == "Blue."
        ask("b", "What colour is the door?")
    finally:
        stop_server(server)
        up.stop()
    first, second, other = (body["messages"] for body in up.bodies)
    assert first == [{"role": "user", "content": "Remember: the door is blue."}]
    assert second == [
        {"role": "user", "content": "Remember: the door is blue."},
        {"role": "assistant", "content": "Noted: the door is blue."},
        {"role": "user", "content": "What colour is the door?"},
    ]
    assert other == [{"role": "user", "content": "What colour is the door?"}]
