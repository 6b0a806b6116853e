"""Canary releases without a server: the rules (parsed, read against two versions' facts with the sequential
test), starting one (every refusal before anything is stored), the watcher promoting or rolling back from
tagged traces, and the one-command rollback."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from llmdock.config import ModelConfig
from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.experiments.book import ExperimentBook
from llmdock.experiments.live import ExperimentTable, live_experiment
from llmdock.experiments.release import (
    challenger_route,
    latest_release,
    rollback,
    running_release,
    start_release,
)
from llmdock.experiments.release_rules import DEFAULT_PROMOTE, DEFAULT_ROLLBACK, evidence, holds, parse_rule
from llmdock.experiments.results import Latencies, VariantStats
from llmdock.experiments.spec import ExperimentSpec, VariantSpec
from llmdock.experiments.watch import ExperimentWatch
from llmdock.registry.models import ModelRegistry
from llmdock.store import Store, TraceRecord, write_traces
from llmdock.store.audit import Actor
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.models import AuditRow

ME = Actor("test", "pytest")
SERVED = {
    "assistant": ModelConfig(backend="llamacpp", model_path="models:/smol@production"),
    "pinned": ModelConfig(backend="llamacpp", model_path="models:/smol/1"),
    "plain": ModelConfig(backend="llamacpp", model_path="/models/x.gguf"),
}


def stats(
    name: str, n: int, errors: int = 0, ms: float = 100.0, thumbs: list[float] | None = None
) -> VariantStats:
    latency = Latencies.of([ms + (i % 7) for i in range(n - errors)])
    st = VariantStats(name, n=n, errors=errors, latency=latency)
    if thumbs is not None:
        st.scores["thumbs"] = thumbs
    return st


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("requests >= 200 and speed > 3", "unknown fact 'speed'"),
        ("worse:colour", "unknown measure 'colour'"),
        ("better", "better on what"),
        ("error_rate is high", "neither FACT OP NUMBER"),
        ("  ", "empty"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_option(rule: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says) as caught:
        parse_rule(rule, "promote_when")
    assert caught.value.param == "promote_when"


def test_a_challenger_with_many_more_errors_is_rolled_back_and_never_promoted() -> None:
    rollback_rule, promote_rule = parse_rule(DEFAULT_ROLLBACK, "r"), parse_rule(DEFAULT_PROMOTE, "p")
    early = evidence(stats("stable", 300, errors=3), stats("challenger", 40, errors=12), minutes=5)
    assert not early.worse("error_rate")  # 30 % vs 1 % over 40 requests: not yet significant (p = 0.17)...
    assert holds(rollback_rule, early) == "requests >= 20 and error_rate > 0.2"  # ...but past the bound
    later = evidence(stats("stable", 300, errors=3), stats("challenger", 100, errors=30), minutes=9)
    assert holds(rollback_rule, later) == "worse"  # significant by the sequential test (p < 0.001)
    assert holds(promote_rule, later) == ""
    assert holds(parse_rule("worse:latency", "r"), later) == ""  # as fast: only the error rate is worse


def test_an_equal_challenger_is_promoted_once_it_has_enough_requests() -> None:
    few = evidence(stats("stable", 900), stats("challenger", 100), minutes=1)
    enough = evidence(stats("stable", 1800), stats("challenger", 200), minutes=2)
    promote = parse_rule(DEFAULT_PROMOTE, "p")
    assert holds(promote, few) == ""
    assert holds(promote, enough) == "requests >= 200 and not worse"
    assert holds(parse_rule(DEFAULT_ROLLBACK, "r"), enough) == ""


def test_feedback_decides_when_the_rule_asks_for_it_and_missing_facts_never_hold() -> None:
    rule = parse_rule("better:thumbs_up or thumbs_up >= 0.99 and requests > 1000", "p")
    no_feedback = evidence(stats("stable", 100), stats("challenger", 100), minutes=1)
    assert holds(rule, no_feedback) == ""
    liked = evidence(
        stats("stable", 100, thumbs=[1.0] * 20 + [0.0] * 60),
        stats("challenger", 100, thumbs=[1.0] * 70 + [0.0] * 10),
        1,
    )
    assert holds(rule, liked) == "better:thumbs_up"
    assert holds(parse_rule("p95_ms < 50 or minutes >= 30", "p"), liked) == ""


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(Store(f"sqlite:///{tmp_path / 'x.db'}"), tmp_path)
    for content in (b"one", b"two"):
        (tmp_path / "w.gguf").write_bytes(content)
        reg.register("smol", tmp_path / "w.gguf", ME, progress=False)
    reg.labels.set("smol", "production", 1, ME)
    return reg


def start(registry: ModelRegistry, **kw: Any) -> Any:
    request = {"model": "assistant", "challenger": "models:/smol/2", "share": 20} | kw
    return start_release(ExperimentBook(registry.store), registry, SERVED, request, ME)


@pytest.mark.parametrize(
    ("kw", "error", "says"),
    [
        ({"model": "nope"}, NotFound, "no model 'nope'"),
        ({"model": "pinned"}, InvalidRequest, "not served from one registry alias"),
        ({"model": "plain"}, InvalidRequest, "not served from one registry alias"),
        ({"challenger": "models:/other/1"}, InvalidRequest, "give a version of smol"),
        ({"challenger": "models:/smol/9"}, NotFound, "no version 9"),
        ({"challenger": "models:/smol@production"}, Conflict, "nothing to release"),
        ({"share": 100}, InvalidRequest, "1 to 99"),
        ({"rollback_when": "errors galore"}, InvalidRequest, "rollback_when"),
    ],
)
def test_a_bad_release_is_refused_and_nothing_is_stored(
    registry: ModelRegistry, kw: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        start(registry, **kw)
    assert ExperimentBook(registry.store).rows() == []


def test_a_release_is_an_experiment_whose_challenger_the_gateway_serves_by_name(
    registry: ModelRegistry,
) -> None:
    row = start(registry)
    assert [(v["name"], v["model"], v["weight"], v.get("registry")) for v in row.variants] == [
        ("stable", "assistant", 80, None),
        ("challenger", "assistant@release", 20, "models:/smol/2"),
    ]
    live = live_experiment(row)
    assert live is not None
    table = ExperimentTable([live])
    assert table.registry_variants() == {"assistant@release": ("assistant", "models:/smol/2")}
    assert table.assign(None, "assistant", "/v1/completions", {"user": "u"}, "t") is not None
    with pytest.raises(Conflict, match="already takes this traffic"):  # one release of a model at a time
        start(registry)
    ended = rollback(ExperimentBook(registry.store), running_release(ExperimentBook(registry.store), "assistant"),
                     ME, "by hand")  # fmt: skip
    assert (ended.status, ended.guard["reason"]) == ("stopped", "rolled back: by hand")
    assert registry.labels.get("smol", "production") == 1  # the alias stays
    with pytest.raises(Conflict, match="stopped already"):
        running_release(ExperimentBook(registry.store), "assistant")


def traces(store: Store, release: str, variant: str, n: int, failed: int, start: int) -> None:
    now = datetime.now(UTC)
    write_traces(store, [
        TraceRecord(f"{start + i:032x}", now, "chat", "assistant", "error" if i < failed else "ok", 50.0 + i % 5,
                    error="backend_error: boom" if i < failed else "",
                    attributes={"llmdock.experiment": release, "llmdock.experiment_variant": variant})
        for i in range(n)
    ], yield_gil=False)  # fmt: skip


def test_the_watcher_rolls_back_a_failing_challenger_and_promotes_a_good_one(registry: ModelRegistry) -> None:
    store = registry.store
    watch = ExperimentWatch(store)
    bad = start(registry)
    traces(store, bad.name, "stable", 100, 0, 0)
    traces(store, bad.name, "challenger", 30, 10, 1000)
    assert watch.apply_releases() == [(bad.name, "rollback", "requests >= 20 and error_rate > 0.2")]
    assert latest_release(ExperimentBook(store), "assistant").status == "stopped"

    good = start(registry, promote_when="requests >= 30 and not worse", share=50)
    traces(store, good.name, "stable", 40, 0, 2000)
    traces(store, good.name, "challenger", 40, 0, 3000)
    with store.session() as s, s.begin():
        s.add(
            FeedbackRow(
                id="f",
                trace_id=f"{3000:032x}",
                created_at=datetime.now(UTC),
                name="thumbs",
                value=1.0,
                source="user",
            )
        )
    assert watch.apply_releases() == [(good.name, "promote", "requests >= 30 and not worse")]
    row = ExperimentBook(store).get(good.name)
    assert (row.status, row.winner) == ("concluded", "challenger")
    assert registry.labels.get("smol", "production") == 2  # gateways follow the alias from here
    assert challenger_route("assistant") == "assistant@release"


async def test_a_key_that_may_not_use_the_variants_model_stays_out_instead_of_being_refused(
    gateway_factory: Any, make_settings: Any
) -> None:
    from llmdock.config import ModelConfig as Model

    models = {"fake": Model(backend="fake", reply="stable"), "fake-b": Model(backend="fake", reply="other")}
    gw = await gateway_factory(make_settings(models=models, auth={"cache_ttl_s": 0}))
    d = gw.runtime.auth.directory
    d.create_user("root", ME, role="admin")
    d.create_key("root", ME)  # an admin key: keys are required from now on
    d.create_user("app", ME, role="service", kind="service")
    scoped, free = d.create_key("app", ME, models=["fake"])[0], d.create_key("app", ME)[0]
    gw.runtime.auth.refresh()
    book = ExperimentBook(gw.runtime.store)
    variants = [VariantSpec("a", model="fake", weight=50), VariantSpec("b", model="fake-b", weight=50)]
    book.create(ExperimentSpec("ab", variants, match={"model": "fake"}), ME, set(models))
    gw.runtime.experiments.load()
    seen: dict[str, set[str]] = {"scoped": set(), "free": set()}
    for i in range(20):
        for who, key in (("scoped", scoped), ("free", free)):
            body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "user": f"u{i}"}
            resp = await gw.client.post(
                "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            assert resp.status_code == 200, resp.text
            seen[who].add(resp.json()["choices"][0]["message"]["content"])
    assert seen == {"scoped": {"stable"}, "free": {"stable", "other"}}


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"ramp": "5,50,25"}, "increasing percents"),
        ({"ramp": "5"}, "two or more"),
        ({"ramp": "5,lots"}, "whole percents"),
        ({"ramp": "5,100"}, "from 1 to 99"),
        ({"ramp": "5,10", "step_after": "soon"}, "a number of requests (200) or a duration"),
        ({"ramp": "5,10", "step_after": "2.5"}, "a number of requests"),
        ({"ramp": "5,10", "share": 20}, "starts at its first step (5)"),
        ({"step_after": "200"}, "give --ramp too"),
    ],
)
def test_a_bad_ramp_is_refused_and_nothing_is_stored(
    registry: ModelRegistry, kw: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(says)):
        start(registry, **({"share": None} | kw))
    assert ExperimentBook(registry.store).rows() == []


def test_a_ramp_climbs_a_step_per_requests_only_while_not_worse_then_the_promote_rule_decides(
    registry: ModelRegistry,
) -> None:
    store, book = registry.store, ExperimentBook(registry.store)
    watch = ExperimentWatch(store)
    row = start(registry, share=None, ramp="10,30,60", step_after="20", promote_when="requests >= 60 and not worse",
                rollback_when="error_rate > 0.5")  # fmt: skip
    assert [v["weight"] for v in row.variants] == [90, 10]
    traces(store, row.name, "stable", 100, 0, 0)
    traces(store, row.name, "challenger", 19, 0, 1000)
    assert watch.apply_releases() == []  # 19 < 20 requests
    traces(store, row.name, "challenger", 1, 0, 1100)
    assert watch.apply_releases() == [(row.name, "step", "requests >= 20 since the last step and not worse")]
    row = book.get(row.name)
    assert [v["weight"] for v in row.variants] == [70, 30]
    assert (
        row.guard["release"]["share"],
        row.guard["release"]["step"],
        row.guard["release"]["step_from"],
    ) == (30, 1, 20)
    live = live_experiment(row)
    assert live is not None
    assert [v.upto for v in live.variants] == [
        7000,
        10000,
    ]  # the challenger keeps its users
    assert watch.apply_releases() == []  # the step's requests count from the step
    # significantly slower now: no step up (and no rollback: the rule here reads errors only)
    write_traces(store, [TraceRecord(f"{5000 + i:032x}", datetime.now(UTC), "chat", "assistant", "ok", 900.0 + i % 5,
                                     attributes={"llmdock.experiment": row.name, "llmdock.experiment_variant": "challenger"})
                         for i in range(40)], yield_gil=False)  # fmt: skip
    assert watch.apply_releases() == []
    assert book.get(row.name).guard["release"]["step"] == 1
    audit = [a for a in audit_actions(store) if a == "experiment.reweigh"]
    assert audit == ["experiment.reweigh"]


def test_a_time_ramp_steps_once_the_time_has_passed_and_the_last_step_reads_the_promote_rule(
    registry: ModelRegistry,
) -> None:
    store, book = registry.store, ExperimentBook(registry.store)
    watch = ExperimentWatch(store)
    row = start(registry, share=None, ramp="20,50", step_after="1s", promote_when="requests >= 1")
    traces(store, row.name, "challenger", 5, 0, 0)
    assert watch.apply_releases() == []  # a second has not passed: no step, and no promotion before the last
    time.sleep(1.05)
    assert watch.apply_releases() == [
        (row.name, "step", "minutes >= 0.0166667 since the last step and not worse")
    ]
    assert book.get(row.name).guard["release"]["share"] == 50
    assert watch.apply_releases() == [(row.name, "promote", "requests >= 1")]


def test_a_challenger_that_cannot_load_is_rolled_back_by_the_gateway_that_tried(
    registry: ModelRegistry,
) -> None:
    errors: dict[str, str] = {}
    watch = ExperimentWatch(registry.store, load_errors=lambda: errors)
    row = start(registry)
    watch._tick(guards=False)
    assert book_status(registry, row.name) == "running"
    errors["assistant@release"] = "ModelLoadError: not a GGUF file"
    watch._tick(guards=False)
    row = ExperimentBook(registry.store).get(row.name)
    assert row.status == "stopped"
    assert row.guard["reason"].startswith("rolled back: the challenger failed to load on ")
    assert row.guard["reason"].endswith(": ModelLoadError: not a GGUF file")
    assert registry.labels.get("smol", "production") == 1


def book_status(registry: ModelRegistry, name: str) -> str:
    return ExperimentBook(registry.store).get(name).status


def audit_actions(store: Store) -> list[str]:
    with store.session() as s:
        return [a for (a,) in s.execute(select(AuditRow.action).order_by(AuditRow.seq))]
