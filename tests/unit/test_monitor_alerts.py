"""Alert rules on stored traces: thresholds, changes and anomalies per model; deduplicated, silenced, resolved;
sent grouped to a real webhook, a Slack-compatible webhook and a real SMTP server; an unreachable webhook is
retried with backoff and never slows requests; bad rules stop the start with file:line: field."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from llmdock.config import Settings, load_settings
from llmdock.config.monitor_settings import AlertChannel, AlertRule, AlertSettings
from llmdock.errors import ConfigError
from llmdock.monitor.alerts import evaluate, notify
from llmdock.store import Store
from llmdock.store.models import Trace
from llmdock.store.monitor_rows import add_silence, list_firings
from tests.conftest import Gateway, free_port

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'alerts.db'}")
    yield s
    s.close()


def add_traces(
    store: Store,
    model: str,
    n: int,
    *,
    at: datetime,
    failed: int = 0,
    ms: float = 100.0,
    error: str = "upstream_error: x",
) -> None:
    with store.session() as s, s.begin():
        for i in range(n):
            bad = i < failed
            s.add(
                Trace(
                    id=f"{model}-{at.timestamp():.0f}-{i}-{time.perf_counter_ns()}"[:32],
                    created_at=at - timedelta(seconds=i % 50),
                    operation="chat",
                    model=model,
                    status="error" if bad else "ok",
                    http_status=502 if bad else 200,
                    duration_ms=ms,
                    error=error if bad else "",
                    input={},
                    attributes={},
                    spans=[],
                )
            )


def rule(**kw: Any) -> AlertRule:
    return AlertRule(**{"name": "errors", "metric": "error_rate", "above": 0.1, "window": "5m", **kw})


class Receiver:
    """A real HTTP server on loopback that keeps the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []

    def handle_message(self, message: Any) -> None:
        self.messages.append(message)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def test_a_threshold_fires_once_per_incident_and_resolves(store: Store) -> None:
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=1), failed=5)
    add_traces(store, "b", 20, at=NOW - timedelta(minutes=1), failed=0)
    r = rule(channels=["hook"])
    due = evaluate(store, [r], NOW)
    assert [n.model for n in due["errors"]] == ["a"]
    assert due["errors"][0].value == pytest.approx(0.25)
    again = evaluate(store, [r], NOW + timedelta(minutes=1))  # still firing: the same firing, not sent again
    assert again["errors"] == []
    [firing] = list_firings(store)
    assert (firing.model, firing.repeats, firing.resolved_at) == ("a", 1, None)
    later = NOW + timedelta(minutes=20)  # the failures are out of the window now, good traffic in it
    add_traces(store, "a", 20, at=later - timedelta(minutes=1))
    assert evaluate(store, [r], later)["errors"] == []
    [firing] = list_firings(store)
    assert firing.resolved_at is not None


def test_a_still_firing_alert_is_sent_again_after_its_silence_window(store: Store) -> None:
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=1), failed=10)
    r = rule(channels=["hook"], silence="10m", window="1h")
    assert len(evaluate(store, [r], NOW)["errors"]) == 1
    assert evaluate(store, [r], NOW + timedelta(minutes=5))["errors"] == []
    resent = evaluate(store, [r], NOW + timedelta(minutes=11))["errors"]
    assert len(resent) == 1
    assert resent[0].repeat


def test_a_silenced_rule_is_stored_but_not_sent(store: Store) -> None:
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=1), failed=10)
    add_silence(store, "errors", "a", NOW + timedelta(hours=1), NOW, "maintenance")
    assert evaluate(store, [rule(channels=["hook"])], NOW)["errors"] == []
    [firing] = list_firings(store)
    assert "silenced" in firing.deliveries


def test_rate_of_change_compares_with_the_window_before(store: Store) -> None:
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=8), ms=100)
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=1), ms=180)
    fast = rule(name="slower", metric="latency_p50_ms", condition="change", above=0.5, channels=["hook"])
    slow = rule(name="much-slower", metric="latency_p50_ms", condition="change", above=1.0, channels=["hook"])
    due = evaluate(store, [fast, slow], NOW)
    assert [n.model for n in due["slower"]] == ["a"]
    assert "+80%" in due["slower"][0].expected
    assert due["much-slower"] == []


def test_an_anomaly_is_judged_against_the_rolling_baseline(store: Store) -> None:
    for hour in range(1, 12):  # an hour of history per window: a steady 10 % of errors, a little noise
        add_traces(store, "a", 20, at=NOW - timedelta(hours=hour, minutes=1), failed=2 + hour % 2)
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=1), failed=2)
    r = AlertRule(
        name="odd",
        metric="error_rate",
        condition="anomaly",
        window="1h",
        baseline="12h",
        sigmas=3,
        channels=["h"],
    )
    assert evaluate(store, [r], NOW)["odd"] == []  # 10 % is what it always is
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=2), failed=12)
    [notice] = evaluate(store, [r], NOW)["odd"]
    assert "baseline" in notice.expected


async def test_notices_are_grouped_per_channel_on_webhook_slack_and_email(
    store: Store, receiver: Receiver, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=1), failed=10)
    add_traces(store, "b", 20, at=NOW - timedelta(minutes=1), failed=10)
    settings = AlertSettings(
        channels={
            "hook": AlertChannel(type="webhook", url=receiver.url),
            "chat": AlertChannel(type="slack", url=receiver.url),
            "mail": AlertChannel(
                type="email", to=["oncall@example.org"], smtp_host="127.0.0.1", smtp_port=port
            ),
        },
        rules=[rule(channels=["hook", "chat", "mail"])],
    )
    due = evaluate(store, settings.rules, NOW)
    sent = await notify(store, settings, due)
    assert sent == {"hook": "sent", "chat": "sent", "mail": "sent"}
    webhook = next(b for b in receiver.bodies if "alerts" in b)
    assert sorted(a["model"] for a in webhook["alerts"]) == ["a", "b"]  # one message for both firings
    slack = next(b for b in receiver.bodies if "text" in b)
    assert "2 alerts firing" in slack["text"]
    assert len(receiver.bodies) == 2
    [mail] = inbox.messages
    assert mail["To"] == "oncall@example.org"
    assert "errors" in mail["Subject"]
    assert "error_rate of a is 0.5" in mail.get_payload()
    assert {f.deliveries["mail"] for f in list_firings(store)} == {"sent"}


async def test_an_unreachable_webhook_is_retried_with_backoff_and_recorded(store: Store) -> None:
    add_traces(store, "a", 20, at=NOW - timedelta(minutes=1), failed=10)
    dead = f"http://127.0.0.1:{free_port()}/hook"
    settings = AlertSettings(
        channels={"hook": AlertChannel(type="webhook", url=dead, retries=2, backoff_s=0.2)},
        rules=[rule(channels=["hook"])],
    )
    t0 = time.perf_counter()
    sent = await notify(store, settings, evaluate(store, settings.rules, NOW))
    assert time.perf_counter() - t0 >= 0.2 + 0.4  # waited 0.2 s, then 0.4 s, between its three attempts
    assert sent["hook"].startswith("failed: ConnectError")
    [firing] = list_firings(store)
    assert firing.deliveries["hook"].startswith("failed")


async def test_the_gateway_answers_at_once_while_a_webhook_is_being_retried(
    gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"
    settings = make_settings(
        alerts=AlertSettings(
            channels={"hook": AlertChannel(type="webhook", url=dead, retries=5, backoff_s=1.0)},
            rules=[
                AlertRule(
                    name="busy", metric="requests", above=0, every="0.2s", window="1m", channels=["hook"]
                )
            ],
        )
    )
    gw: Gateway = await gateway_factory(settings)
    chat = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert (await gw.client.post("/v1/chat/completions", json=chat)).status_code == 200
    gw.flush_traces()
    assert gw.runtime.store is not None
    for _ in range(100):  # the loop evaluates every 0.2 s: wait for the firing
        if list_firings(gw.runtime.store):
            break
        await asyncio.sleep(0.05)
    assert list_firings(gw.runtime.store), "the rule should have fired"
    times = []
    for _ in range(20):  # the webhook is now being retried for several seconds
        t0 = time.perf_counter()
        assert (await gw.client.post("/v1/chat/completions", json=chat)).status_code == 200
        times.append(time.perf_counter() - t0)
    assert max(times) < 0.45, times  # awaiting a delivery would take >= 1 s, its first backoff
    assert "hook" not in list_firings(gw.runtime.store)[0].deliveries  # still retrying


@pytest.mark.parametrize(
    ("yaml_rule", "field", "message"),
    [
        ("{name: x, metric: latency_p97, above: 1}", "alerts.rules.0.metric", "unknown metric 'latency_p97'"),
        ("{name: x, metric: cost, above: 1, every: 5 minutes}", "alerts.rules.0.every", "malformed duration"),
        ("{name: x, metric: cost, above: 1, channels: [pager]}", "alerts", "unknown channel 'pager'"),
        ("{name: x, metric: cost}", "alerts.rules.0", "needs above or below"),
    ],
)
def test_a_bad_rule_stops_the_start_with_file_line_and_field(
    tmp_path: Path, yaml_rule: str, field: str, message: str
) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(f"include_builtin_models: false\nalerts:\n  rules:\n    - {yaml_rule}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    line = err.value.one_line()
    assert f"{cfg}:" in line
    assert f"{field}:" in line
    assert message in line


def test_alerts_check_then_list_and_silence_from_the_cli(tmp_path: Path, receiver: Receiver) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        f"home: {tmp_path}\ninclude_builtin_models: false\nalerts:\n"
        f"  channels: {{hook: {{type: webhook, url: '{receiver.url}'}}}}\n"
        "  rules: [{name: errors, metric: error_rate, above: 0.1, window: 5m, channels: [hook]}]\n"
    )
    store = Store(load_settings(cfg).resolved_database_url())
    add_traces(store, "chatty", 10, at=datetime.now(UTC) - timedelta(seconds=30), failed=5)
    store.close()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmdock", "alerts", *args, "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    checked = cli("check")
    assert checked.returncode == 0, checked.stderr
    assert "hook: sent" in checked.stdout
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "errors" in listed.stdout
    assert "chatty" in listed.stdout
    assert "hook: sent" in listed.stdout
    bad = cli("silence", "nope", "--for", "1h")
    assert bad.returncode == 2
    assert "no alert rule named 'nope'" in bad.stderr
    assert cli("silence", "errors", "--for", "2h").returncode == 0
