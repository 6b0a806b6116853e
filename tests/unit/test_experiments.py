"""A/B experiments on the in-process gateway (fake model): checks at creation, sticky assignment, the trace
attributes and header, guard rails, conclusion moving the label; and the sequential test's error rate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from llmdock.config import Settings
from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.experiments.book import ExperimentBook
from llmdock.experiments.live import live_experiment
from llmdock.experiments.report import auto_winner, experiment_report
from llmdock.experiments.sequential import compare_rates
from llmdock.experiments.spec import ExperimentSpec, GuardRails, parse_variant, parse_weights
from llmdock.prompts import PromptRegistry
from llmdock.store import Store, get_trace
from llmdock.store.audit import Actor
from tests.conftest import Gateway

ME = Actor("test", "pytest")
MODELS = {"fake", "fake-embed"}


def push_versions(store: Store) -> None:
    prompts = PromptRegistry(store)
    for text in ("Answer briefly: {{ q }}", "Answer in detail: {{ q }}"):
        prompts.create("support", ME, kind="chat", template=[{"role": "user", "content": text}])
    prompts.labels.set("support", "production", 1, ME)


def spec(name: str = "tone", *variants: str, weights: str = "50,50", **kw: Any) -> ExperimentSpec:
    parsed = [parse_variant(v) for v in variants or ("a=prompt:support@1", "b=prompt:support@2")]
    for v, w in zip(parsed, parse_weights(weights, len(parsed)), strict=True):
        v.weight = w
    return ExperimentSpec(name, parsed, **kw)


@pytest.fixture
async def gw(gateway_factory: Callable[[Settings], Any], make_settings: Callable[..., Settings]) -> Gateway:
    gateway: Gateway = await gateway_factory(make_settings())
    assert gateway.runtime.store is not None
    push_versions(gateway.runtime.store)
    return gateway


def ask(user: str) -> dict[str, Any]:
    return {
        "model": "fake",
        "messages": [],
        "prompt_id": "support",
        "prompt_variables": {"q": "hi"},
        "user": user,
    }


@pytest.mark.parametrize(
    ("variants", "weights", "error", "says"),
    [
        (("a=prompt:support@1", "b=prompt:support@2"), "60,50", InvalidRequest, "sum to 110"),
        (("a=prompt:support@1", "b=prompt:support@9"), "50,50", NotFound, "no version 9"),
        (("a=prompt:support@1", "b=prompt:nope@1"), "50,50", NotFound, "nope"),
        (("a=prompt:support@1", "b=prompt:support@1,model:gpt-9"), "50,50", NotFound, "no model 'gpt-9'"),
        (("a=prompt:support@1", "a=prompt:support@2"), "50,50", InvalidRequest, "distinct names"),
    ],
)
def test_bad_experiments_are_refused_and_nothing_is_created(
    tmp_path: Any, variants: tuple[str, ...], weights: str, error: type[Exception], says: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    push_versions(store)
    book = ExperimentBook(store)
    parsed = [parse_variant(v) for v in variants]
    for v, w in zip(parsed, [int(x) for x in weights.split(",")], strict=True):
        v.weight = w
    with pytest.raises(error, match=says):
        book.create(ExperimentSpec("tone", parsed), ME, MODELS)
    assert book.rows() == []


def test_weights_and_variants_are_checked_as_they_are_parsed() -> None:
    with pytest.raises(InvalidRequest, match="sum to 90"):
        parse_weights("45,45", 2)
    with pytest.raises(InvalidRequest, match="2 weights for 3"):
        parse_weights("50,50", 3)
    with pytest.raises(InvalidRequest, match="neither"):
        parse_variant("b=promt:support@2")
    assert parse_weights(None, 3) == [34, 33, 33]
    both = parse_variant("b=prompt:support@staging,model:fake")
    assert (both.prompt, both.prompt_ref, both.model) == ("support", "staging", "fake")


def test_two_running_experiments_may_not_take_the_same_traffic(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    push_versions(store)
    book = ExperimentBook(store)
    book.create(spec("tone"), ME, MODELS)
    with pytest.raises(Conflict, match="already takes this traffic"):
        book.create(spec("tone2"), ME, MODELS)
    with pytest.raises(Conflict, match="already takes this traffic"):
        book.create(spec("by-model", match={"model": "fake"}), ME, MODELS)
    book.stop("tone", ME)
    assert book.create(spec("tone2"), ME, MODELS).status == "running"
    assert [r.name for r in book.rows("running")] == ["tone2"]


async def test_requests_are_split_sticky_by_user_recorded_and_concluded(gw: Gateway) -> None:
    store = gw.runtime.store
    assert store is not None
    assert gw.runtime.experiments is not None
    book = ExperimentBook(store)
    before = await gw.client.post("/v1/chat/completions", json=ask("user-1"))
    assert "Answer briefly" in before.json()["choices"][0]["message"]["content"]  # production (1), now cached
    book.create(spec("tone"), ME, MODELS)
    assert gw.runtime.experiments.load()
    seen: dict[str, str] = {}
    for i in range(120):
        user = f"user-{i % 40}"
        resp = await gw.client.post("/v1/chat/completions", json=ask(user))
        assert resp.status_code == 200, resp.text
        variant = resp.headers["x-llmdock-experiment"]
        assert seen.setdefault(user, variant) == variant  # the same user, the same variant, every time
        detail = "detail" in resp.json()["choices"][0]["message"]["content"]
        assert detail == variant.endswith("/b")  # the variant's prompt version answered
    counts = Counter(seen.values())
    assert set(counts) == {"tone/a", "tone/b"}
    assert min(counts.values()) >= 10  # 40 users, 50/50: far from all in one
    gw.flush_traces()
    trace, _ = get_trace(store, resp.headers["x-llmdock-trace-id"])
    assert trace.attributes["llmdock.experiment"] == "tone"
    assert trace.attributes["llmdock.prompt_version"] == (2 if variant.endswith("/b") else 1)
    report = experiment_report(store, book.get("tone"))
    assert sum(v["requests"] for v in report.variants) == 120
    pinned = await gw.client.post("/v1/chat/completions", json=ask("user-1") | {"prompt_version": 1})
    assert "x-llmdock-experiment" not in pinned.headers  # a pinned version is left alone

    book.conclude("tone", "b", ME)
    assert PromptRegistry(store).labels.get("support", "production") == 2
    assert gw.runtime.experiments.load()
    gw.runtime.experiments.forget_changed()  # what the watch loop does after each reload
    after = await gw.client.post("/v1/chat/completions", json=ask("user-1"))
    assert "x-llmdock-experiment" not in after.headers
    assert "detail" in after.json()["choices"][0]["message"]["content"]  # the winner, at once


async def test_guard_rails_stop_each_variant_at_the_request_past_its_bound_without_reading_traces(
    gw: Gateway,
) -> None:
    from sqlalchemy import event

    store = gw.runtime.store
    watch = gw.runtime.experiments
    assert store is not None
    assert watch is not None
    book = ExperimentBook(store)
    assert watch.observe not in gw.runtime.sink.observers  # no guarded experiment: nothing counts
    book.create(spec("tone", guard=GuardRails(max_p50_ms=0.0, min_samples=5)), ME, MODELS)
    watch.load()
    watch.forget_changed()  # what the watch loop does on the event loop after each reload
    assert watch.observe in gw.runtime.sink.observers
    served: Counter[str] = Counter()
    flagged_at: dict[str, int] = {}
    for i in range(30):
        resp = await gw.client.post("/v1/chat/completions", json=ask(f"u{i}"))
        variant = resp.headers["x-llmdock-experiment"].split("/")[1]
        served[variant] += 1
        for _, v in watch.tally.tripped:
            flagged_at.setdefault(v, served[v])
    assert flagged_at == {"a": 5, "b": 5}  # flagged by the very request that reached min_samples
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    stopped = watch.apply_guards()
    assert {(e, v) for e, v, _ in stopped} == {("tone", "a"), ("tone", "b")}
    assert not [q for q in statements if "FROM traces" in q]  # counters, not a read of the traces
    assert book.get("tone").status == "stopped"  # the last variant standing ends it
    assert "latency p50 > 0 ms" in stopped[0][2]
    assert watch.apply_guards() == []  # flagged once
    watch.load()
    watch.forget_changed()
    assert watch.observe not in gw.runtime.sink.observers  # it ended: the counters come off the sink


def test_a_worker_that_starts_late_counts_on_from_the_stored_traces(tmp_path: Any) -> None:
    from datetime import UTC, datetime

    from llmdock.experiments.watch import ExperimentWatch
    from llmdock.store import TraceRecord, write_traces

    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    push_versions(store)
    book = ExperimentBook(store)
    book.create(spec("tone", guard=GuardRails(max_error_rate=0.3, min_samples=10)), ME, MODELS)
    attrs = {"llmdock.experiment": "tone", "llmdock.experiment_variant": "b"}
    old = [
        TraceRecord(
            f"{i:032x}",
            datetime.now(UTC),
            "chat",
            "fake",
            "error" if i < 4 else "ok",
            5.0,
            error="upstream: down" if i < 4 else "",
            attributes=attrs,
        )  # fmt: skip
        for i in range(9)
    ]
    write_traces(store, old, yield_gil=False)  # 4 errors in 9: under min_samples still
    watch = ExperimentWatch(store)
    watch.load()
    assert watch.apply_guards() == []
    late = TraceRecord("f" * 32, datetime.now(UTC), "chat", "fake", "ok", 5.0, attributes=attrs)
    watch.observe(late)  # the 10th request: 4 of 10 failed
    assert [(e, v) for e, v, _ in watch.apply_guards()] == [("tone", "b")]
    with pytest.raises(Conflict, match="stopped already"):  # a second worker finds it done
        book.stop_variant("tone", "b", "again", ME)
    store.close()


def test_a_stopped_variants_traffic_goes_to_the_others(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    push_versions(store)
    book = ExperimentBook(store)
    three = spec(
        "three", "a=prompt:support@1", "b=prompt:support@2", "c=prompt:support@1", weights="20,30,50"
    )
    row = book.create(three, ME, MODELS)
    live = live_experiment(row)
    assert live is not None
    shares = Counter(live.pick(f"user-{i}").name for i in range(6000))
    assert abs(shares["a"] / 6000 - 0.2) < 0.03
    assert abs(shares["c"] / 6000 - 0.5) < 0.03
    live = live_experiment(book.stop_variant("three", "b", "error rate 0.5 > 0.1", ME))
    assert live is not None
    after = Counter(live.pick(f"user-{i}").name for i in range(6000))
    assert set(after) == {"a", "c"}
    assert abs(after["a"] / 6000 - 0.2 / 0.7) < 0.03
    assert book.get("three").status == "running"


def test_auto_needs_significance(tmp_path: Any) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    push_versions(store)
    row = ExperimentBook(store).create(spec("tone"), ME, MODELS)
    assert auto_winner(store, row)[0] is None


def test_peeking_at_the_sequential_test_keeps_false_positives_under_alpha() -> None:
    """A/A experiments looked at every 25 requests up to 1,000: the fixed-horizon z-test, read at every
    look, calls a difference far more often than 5 %; the sequential test stays under it."""
    rng = np.random.default_rng(7)
    runs, looks = 300, range(25, 1001, 25)
    naive = sequential = 0
    for _ in range(runs):
        a, b = rng.random(1000) < 0.3, rng.random(1000) < 0.3
        diffs = [compare_rates("r", int(a[:n].sum()), n, int(b[:n].sum()), n) for n in looks]
        naive += any(d is not None and d.p_fixed < 0.05 for d in diffs)
        sequential += any(d is not None and d.significant for d in diffs)
    assert naive / runs > 0.12
    assert sequential / runs <= 0.05


def test_a_real_difference_is_found() -> None:
    d = compare_rates("thumbs-up rate", 300, 1000, 420, 1000)
    assert d is not None
    assert d.significant
    assert d.low > 0
    assert d.samples_needed == 0


def test_variant_facts_come_from_the_tagged_traces_on_each_store(db_url: str) -> None:
    from datetime import UTC, datetime

    from llmdock.experiments.guard_tally import Bounds, Tally
    from llmdock.experiments.results import variant_stats
    from llmdock.store import TraceRecord, write_traces
    from llmdock.store.feedback_rows import FeedbackRow

    store = Store(db_url)
    push_versions(store)
    row = ExperimentBook(store).create(
        spec("tone", guard=GuardRails(max_error_rate=0.2, min_samples=5)), ME, MODELS
    )
    now = datetime.now(UTC)
    records = []
    for i in range(20):
        variant = "a" if i % 2 else "b"
        failed = variant == "b" and i % 4 == 0  # b: 5 of its 10 fail
        records.append(
            TraceRecord(
                f"{i:032x}",
                now,
                "chat",
                "fake",
                "error" if failed else "ok",
                10.0 + i,
                prompt_tokens=3,
                completion_tokens=4,
                cost=0.5,
                error="content_policy: blocked" if failed else "",
                attributes={"llmdock.experiment": "tone", "llmdock.experiment_variant": variant},
            )  # fmt: skip
        )
    records.append(
        TraceRecord("f" * 32, now, "chat", "fake", "ok", 1.0, attributes={"llmdock.experiment": "x"})
    )
    write_traces(store, records, yield_gil=False)
    with store.session() as s, s.begin():
        s.add(
            FeedbackRow(id="1", trace_id=f"{1:032x}", created_at=now, name="thumbs", value=1.0, source="user")
        )
    stats = variant_stats(store, row)
    assert (stats["a"].n, stats["a"].errors, stats["b"].n, stats["b"].errors, stats["b"].blocked) == (
        10,
        0,
        10,
        5,
        5,
    )
    assert stats["a"].scores == {"thumbs": [1.0]}
    assert stats["a"].cost == pytest.approx(5.0)
    assert (stats["a"].tokens, stats["a"].answered) == (70, 10)
    bounds = Bounds.of(row)
    assert bounds is not None
    verdicts = {v: bounds.verdict(Tally.of(st, bounds.max_p50_ms)) for v, st in stats.items()}
    assert verdicts == {"a": "", "b": "error rate 0.5 > 0.2 over 10 requests"}
    store.close()
