"""simonw's ``llm`` CLI, configured for llmdock as its docs say (``extra-openai-models.yaml``), against a real
``llmdock serve``: a prompt answered non-streaming and streaming, and the token usage logged by ``llm``
equal to what the server counted.

Run: ``bash scripts/pytest.sh -m clients tests/clients/test_llm_cli.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from llmdock.store import Store
from llmdock.store.models import Trace
from llmdock.store.traces import list_traces
from tests.integration.conftest import Server

pytestmark = [pytest.mark.clients, pytest.mark.server, pytest.mark.model]
PROMPT = "Name three colours."


def llm(user_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLM_USER_PATH": str(user_path)}
    return subprocess.run(
        [sys.executable, "-m", "llm", *args], capture_output=True, text=True, timeout=300, env=env, check=True
    )


@pytest.fixture(scope="module")
def user_path(clients_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("llm-user")
    (path / "extra-openai-models.yaml").write_text(
        f"- model_id: llmdock-smollm2\n  model_name: smollm2\n  api_base: {clients_server.v1}\n"
        '  headers:\n    Cache-Control: "no-cache"\n'
    )
    return path


def _traces(server: Server, count: int) -> list[Trace]:
    """The server's newest ``count`` traces, oldest first, once its trace writer has stored them."""
    store = Store(f"sqlite:///{server.home / 'llmdock.db'}")
    deadline = time.monotonic() + 20
    while len(found := list_traces(store, limit=count, model="smollm2")) < count:
        assert time.monotonic() < deadline, "the server stored no trace of the llm prompts"
        time.sleep(0.2)
    return found[::-1]


def test_llm_prompts_llmdock_streaming_and_not_and_logs_the_usage(
    clients_server: Server, user_path: Path
) -> None:
    options = ["-o", "temperature", "0", "-o", "max_tokens", "40"]
    plain = llm(user_path, "-m", "llmdock-smollm2", "--no-stream", *options, PROMPT).stdout.strip()
    streamed = llm(user_path, "-m", "llmdock-smollm2", *options, PROMPT).stdout.strip()
    assert plain
    assert streamed == plain  # temperature 0: the same answer either way
    traces = _traces(clients_server, 2)
    assert [t.stream for t in traces] == [0, 1]
    logs = orjson.loads(llm(user_path, "logs", "--json", "-n", "2").stdout)
    logs.sort(key=lambda entry: entry["datetime_utc"])
    assert [entry["response"].strip() for entry in logs] == [plain, streamed]
    for entry, trace in zip(logs, traces, strict=True):
        assert entry["model"] == "llmdock-smollm2"
        assert (entry["input_tokens"], entry["output_tokens"]) == (
            trace.prompt_tokens,
            trace.completion_tokens,
        )
        assert entry["input_tokens"] > 0
        assert entry["output_tokens"] > 0
