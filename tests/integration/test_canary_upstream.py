"""A provider canary for real: `llmdock canary add` keeps a schedule, `llmdock jobs scheduler` runs it against a
stand-in OpenAI-compatible upstream over loopback HTTP; while the upstream answers as at the baseline nothing
is sent, and when it changes its answers and fingerprint mid-test one alert reaches a real webhook, naming
what changed, however many runs see the change."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.errors import ConfigError
from llmdock.store import Store
from llmdock.store.canary_rows import CanaryRun
from tests.unit.test_monitor_alerts import Receiver, receiver  # noqa: F401 (the fixture)
from tests.upstream import Upstream

SUITE = """\
name: pinned
dataset: cases.jsonl
targets: [{model: hosted}]
assert:
  - {type: icontains, value: reply}
  - {type: regex, name: from-a, value: "from a$"}
"""


def _runs(home: Path) -> list[CanaryRun]:
    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    try:
        with store.session() as s:
            rows = list(s.scalars(select(CanaryRun).order_by(CanaryRun.id)))
            s.expunge_all()
            return rows
    finally:
        store.close()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``llmdock ARGS`` in this process (the commands' own code; no interpreter start per call)."""
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))
    monkeypatch.setenv("LLMDOCK_CONFIG", str(tmp_path / "llmdock.yaml"))
    monkeypatch.setenv("COLUMNS", "200")

    def call(*args: str) -> Result:
        return CliRunner().invoke(app, list(args))

    return call


def test_a_canary_alerts_once_when_its_upstream_changes_and_never_while_it_does_not(
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
    cli: Callable[..., Result],
) -> None:
    up = Upstream("a")
    up.fingerprint = "fp_a"
    try:
        (tmp_path / "llmdock.yaml").write_text(
            f"home: {tmp_path}\ninclude_builtin_models: false\ndefault_model: hosted\n"
            "default_embedding_model: ''\n"
            f"models:\n  hosted:\n    backend: openai_compat\n    base_url: {up.url}\n    upstream_model: m\n"
            f"alerts:\n  channels: {{hook: {{type: webhook, url: '{receiver.url}', retries: 0}}}}\n"
        )
        (tmp_path / "suite.yaml").write_text(SUITE)
        (tmp_path / "cases.jsonl").write_text(
            "".join(json.dumps({"input": f"q{i}"}) + "\n" for i in range(6))
        )
        # loopback answers take milliseconds, and a loaded test machine multiplies them: not this test's subject
        flags = ["--target", "hosted", "--suite", str(tmp_path / "suite.yaml"), "--latency-floor-ms", "5000"]
        added = cli("canary", "add", "probe", *flags, "--every", "2s", "--channel", "hook")
        assert added.exit_code == 0, added.output
        assert "6 cases of pinned on hosted, * * * * * */2 (UTC)" in added.output

        first = cli("canary", "run", "probe")
        assert "canary probe: baseline" in first.output, first.output
        assert {(b["temperature"], b["seed"]) for b in up.bodies} == {(0, 0)}  # pinned sampling

        assert cli("jobs", "scheduler", "--tick", "0.2", "--for", "4.5").exit_code == 0
        same = [r for r in _runs(tmp_path) if r.status == "same"]
        assert same, [r.findings for r in _runs(tmp_path)]
        assert {r.unchanged for r in same} == {1.0}
        assert receiver.bodies == []  # unchanged answers: no alert

        up.name, up.fingerprint = "b", "fp_b"  # the provider swaps the model behind the name
        assert cli("jobs", "scheduler", "--tick", "0.2", "--for", "6.5").exit_code == 0
        seen = [r for r in _runs(tmp_path) if r.status == "changed"]
        assert len(seen) >= 2, [r.status for r in _runs(tmp_path)]  # several runs saw it…
        assert len(receiver.bodies) == 1  # …one alert
        [alert] = receiver.bodies[0]["alerts"]
        assert alert["rule"] == "canary:probe"
        assert alert["model"] == "hosted"
        assert alert["value"] == 0.0
        message = alert["message"]
        assert "0 of 6 answers unchanged" in message
        assert "'reply from a' -> 'reply from b'" in message
        assert "from-a 1 -> 0" in message
        assert "McNemar exact p 0.031" in message
        assert "system_fingerprint fp_a -> fp_b" in message
        assert "header.x-model-version fp_a -> fp_b" in message

        shown = cli("canary", "show", "probe").output
        assert f"{len(seen)}x" in shown, shown
        assert "hook: sent" in shown
        assert "│ firing " in shown
        assert "answers, score, served" in cli("canary", "list").output

        up.name, up.fingerprint = "a", "fp_a"  # rolled back: the next run resolves the firing
        back = cli("canary", "run", "probe").output
        assert "canary probe: same, 100% of answers unchanged" in back, back
        assert "│ firing " not in cli("canary", "show", "probe").output  # resolved

        assert cli("canary", "remove", "probe").exit_code == 0
        assert "canary.yaml" not in cli("jobs", "schedules").output
    finally:
        up.stop()


def test_a_canary_on_an_unknown_model_is_refused_naming_the_flag(
    tmp_path: Path, cli: Callable[..., Result]
) -> None:
    (tmp_path / "llmdock.yaml").write_text(f"home: {tmp_path}\ninclude_builtin_models: false\n")
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "cases.jsonl").write_text('{"input": "q"}\n')
    result = cli("canary", "add", "probe", "--suite", str(tmp_path / "suite.yaml"), "--target", "nope")
    assert isinstance(result.exception, ConfigError)
    assert result.exception.one_line().startswith("--target: unknown model 'nope'")
