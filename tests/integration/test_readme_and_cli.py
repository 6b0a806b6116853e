"""The README's curl examples work as written, and the CLI answers, lists and shows traces on the real model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Server

pytestmark = [pytest.mark.model, pytest.mark.server]
ROOT = Path(__file__).parents[2]


def readme_curl_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]
    return commands


def test_the_readme_has_curl_examples() -> None:
    assert len(readme_curl_commands()) >= 6


@pytest.mark.parametrize("command", readme_curl_commands())
def test_readme_curl_example_works(server: Server, command: str) -> None:
    cmd = command.replace("http://127.0.0.1:8000", server.url)
    proc = subprocess.run(
        ["bash", "-c", cmd + " -w '\\n%{http_code}'"], capture_output=True, text=True, timeout=120
    )
    body, _, status = proc.stdout.rpartition("\n")
    assert status == "200", proc.stdout + proc.stderr
    if '"stream": true' in command:
        assert body.rstrip().endswith("data: [DONE]")
    else:
        assert "error" not in json.loads(body)


def llmdock(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmdock", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=server.env(),
    )


def test_cli_chat_streams_an_answer_and_leaves_a_trace(server: Server) -> None:
    chat = llmdock(
        server,
        "chat",
        "What is the capital of Italy? Answer in one sentence.",
        "--max-tokens",
        "30",
        "--temperature",
        "0",
    )
    assert chat.returncode == 0, chat.stderr
    assert "Rome" in chat.stdout

    listing = llmdock(server, "traces", "list", "-n", "50")
    assert listing.returncode == 0, listing.stderr
    assert "cli" in listing.stdout
    shown = json.loads(llmdock(server, "traces", "show", "--json", _newest_cli_trace(server)).stdout)
    assert [s["name"] for s in shown["spans"]] == ["preprocess", "cache", "generate", "postprocess"]
    assert "Rome" in shown["output"]

    human = llmdock(server, "traces", "show", shown["id"][:10])
    assert "preprocess" in human.stdout
    assert "gen_ai.usage.input_tokens" in human.stdout


def _newest_cli_trace(server: Server) -> str:
    from llmdock.store import Store, list_traces

    store = Store(f"sqlite:///{server.home / 'llmdock.db'}")
    return next(t.id for t in list_traces(store, limit=50) if t.attributes.get("llmdock.source") == "cli")


def test_cli_chat_against_the_gateway(server: Server) -> None:
    chat = llmdock(
        server,
        "chat",
        "What is the capital of Italy? Answer in one sentence.",
        "--max-tokens",
        "30",
        "--temperature",
        "0",
        "--url",
        server.v1,
    )
    assert chat.returncode == 0, chat.stderr
    assert "Rome" in chat.stdout


def test_cli_models_list(server: Server) -> None:
    out = llmdock(server, "models", "list")
    assert out.returncode == 0
    assert "smollm2" in out.stdout
    assert "gemma3-270m" in out.stdout


def test_cli_unknown_model_is_one_line_exit_2(server: Server) -> None:
    out = llmdock(server, "chat", "hi", "--model", "nope")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "nope" in out.stderr
