"""Traces → a dataset: real requests through the in-process gateway (fake backend), stored with the privacy
policy's redaction, then imported with filters; what was redacted when stored stays redacted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.config import ModelConfig, Settings
from llmdock.config.sections import PrivacySettings


async def test_chat_traces_become_rows_filtered_by_model_status_and_time(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gateway_factory: Callable[[Settings], Any],
    make_settings: Callable[..., Settings],
) -> None:
    models = {"fake": ModelConfig(backend="fake"), "other": ModelConfig(backend="fake")}
    gw = await gateway_factory(make_settings(models=models, privacy=PrivacySettings(pii="mask")))
    for model, text in [
        ("fake", "Mail me at jane.doe@example.com"),
        ("fake", "Hello there"),
        ("other", "Hi"),
    ]:
        body = {"model": model, "messages": [{"role": "user", "content": text}]}
        assert (await gw.client.post("/v1/chat/completions", json=body)).status_code == 200
    assert (
        await gw.client.post("/v1/completions", json={"model": "fake", "prompt": "a completion"})
    ).status_code == 200
    gw.flush_traces()

    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["datasets", "import", "--from-traces", "--model", "fake", "--since", "1h", "--name", "t", "--json"],
    )
    assert out.exit_code == 0, out.output
    version = json.loads(out.output)
    assert version["rows"] == 2
    assert version["report"]["dropped"] == {"no chat body": 1}  # the completion
    assert version["lineage"]["sources"][0]["traces"]["model"] == "fake"
    shown = json.loads(runner.invoke(app, ["datasets", "show", "t", "--head", "5", "--json"]).output)
    users = [r["messages"][0]["content"] for r in shown["head"]]
    assert users == ["Mail me at <EMAIL_ADDRESS>", "Hello there"]  # redacted as the store keeps it
    assert all(r["messages"][-1]["role"] == "assistant" and r["meta"]["trace_id"] for r in shown["head"])

    later = runner.invoke(
        app, ["datasets", "import", "--from-traces", "--since", "2099-01-01", "--name", "none"]
    )
    assert later.exit_code != 0
    assert later.exception.one_line() == "--from-traces: no valid rows (0 read): nothing stored"
    bad = runner.invoke(app, ["datasets", "import", "--from-traces", "--since", "yesterday", "--name", "x"])
    assert bad.exit_code != 0
    assert (
        bad.exception.one_line() == "--since: 'yesterday' is neither an ISO 8601 time nor a duration like 7d"
    )
