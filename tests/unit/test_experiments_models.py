"""Experiments between models served from the model registry: concluding moves the registered model's alias to
the winner's version, pinned or served through an alias of its own, audited; a running gateway following that
alias serves the winner next."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.config import ModelConfig
from llmdock.experiments.book import ExperimentBook, served_versions
from llmdock.experiments.spec import ExperimentSpec, parse_variant
from llmdock.registry.models import ModelRegistry
from llmdock.routing.build import build_route
from llmdock.store import audit
from llmdock.store.audit import Actor
from tests.unit.test_registry_follow import RegisteredBackend, answer, setup

ME = Actor("test", "pytest")


def model_experiment(book: ExperimentBook, models: set[str], *variants: str) -> None:
    parsed = [parse_variant(v) for v in variants]
    for v in parsed:
        v.weight = 100 // len(parsed)
    parsed[0].weight += 100 - sum(v.weight for v in parsed)
    book.create(ExperimentSpec("models", parsed, match={"model": "assistant"}), ME, models)


async def test_a_model_winner_served_through_an_alias_moves_the_label_and_the_gateway_follows(
    tmp_path: Path,
) -> None:
    registry, follow, settings = setup(tmp_path)  # m/1 "one" (production), m/2 "two", m/3 "broken"
    registry.labels.set("m", "candidate", 2, ME)
    candidate = ModelConfig(backend="registered", model_path="models:/m@candidate")
    follow.routes["challenger"] = build_route(
        "challenger", candidate, settings, {"registered": RegisteredBackend}
    )
    for route in follow.routes.values():
        await route.start()
    assert (await answer(follow), await answer(follow, "challenger")) == ("one", "two")
    configs = {"assistant": ModelConfig(backend="registered", model_path="models:/m@production"),
               "challenger": candidate}  # fmt: skip
    served = served_versions(configs, registry.store)
    assert served == {"assistant": ("m", 1), "challenger": ("m", 2)}  # aliases, resolved now

    book = ExperimentBook(registry.store)
    model_experiment(book, set(configs), "a=model:assistant", "b=model:challenger")
    book.conclude("models", "b", ME, served)
    assert registry.labels.get("m", "production") == 2
    promoted = audit.list_rows(registry.store, action="model.promote")
    assert (promoted[0].target, promoted[0].before, promoted[0].after) == (  # the newest first
        "m@production",
        {"version": 1},
        {"version": 2},
    )
    await follow.apply(follow.read())  # what the gateway's follow loop does on its next poll
    assert await answer(follow) == "two"
    assert book.get("models").status == "concluded"


def test_a_pinned_model_winner_moves_the_alias_to_its_version(tmp_path: Path) -> None:
    registry, _, _ = setup(tmp_path)
    configs = {
        "ft-1": ModelConfig(backend="llamacpp", model_path="models:/m/1"),
        "ft-2": ModelConfig(backend="llamacpp", model_path="models:/m/2"),
        "assistant": ModelConfig(backend="llamacpp", model_path="models:/m@production"),
        "file": ModelConfig(backend="llamacpp", model_path=str(tmp_path / "m.bin")),
    }
    served = served_versions(configs, registry.store)
    assert served == {"ft-1": ("m", 1), "ft-2": ("m", 2), "assistant": ("m", 1)}  # a file serves no version
    book = ExperimentBook(registry.store)
    model_experiment(book, set(configs), "a=model:ft-1", "b=model:ft-2", "c=model:file")
    book.conclude("models", "b", ME, served)
    assert registry.labels.get("m", "production") == 2


def test_a_model_winner_that_serves_no_registered_version_moves_nothing(tmp_path: Path) -> None:
    registry: ModelRegistry
    registry, _, _ = setup(tmp_path)
    configs = {"assistant": ModelConfig(backend="llamacpp", model_path="models:/m@production"),
               "file": ModelConfig(backend="llamacpp", model_path=str(tmp_path / "m.bin"))}  # fmt: skip
    book = ExperimentBook(registry.store)
    model_experiment(book, set(configs), "a=model:assistant", "b=model:file")
    book.conclude("models", "b", ME, served_versions(configs, registry.store))
    assert registry.labels.get("m", "production") == 1
    assert book.get("models").winner == "b"


@pytest.mark.parametrize(
    ("guard", "outcomes", "says"),
    [
        (
            {"max_error_rate": 0.2},
            ["ok"] * 7 + ["upstream: down"] * 3,
            "error rate 0.3 > 0.2 over 10 requests",
        ),
        (
            {"max_block_rate": 0.1},
            ["ok"] * 8 + ["content_policy: injection"] * 2,
            "guard-block rate 0.2 > 0.1",
        ),
        (
            {"max_p50_ms": 100.0},
            [5.0] * 4 + [500.0] * 6,
            "latency p50 > 100 ms (6 of 10 answered requests slower)",
        ),
        ({"max_p50_ms": 100.0}, [5.0] * 5 + [500.0] * 5, ""),  # half slower: the median is not above it
        ({"max_error_rate": 0.2}, ["ok"] * 6 + ["upstream: down"] * 3, ""),  # 9 < min_samples
    ],
)
def test_each_bound_flags_the_variant_at_the_request_that_crosses_it(
    guard: dict[str, float], outcomes: list[str | float], says: str
) -> None:
    from datetime import UTC, datetime

    from llmdock.experiments.guard_tally import GuardTally
    from llmdock.store.experiment_rows import ExperimentRow
    from llmdock.store.trace_records import TraceRecord

    row = ExperimentRow(name="tone", variants=[{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
                        guard={"min_samples": 10, **guard})  # fmt: skip
    tally = GuardTally()
    for fresh, bounds in tally.watch([row]):
        tally.seed(fresh, bounds, None)
    attrs = {"llmdock.experiment": "tone", "llmdock.experiment_variant": "b"}
    first = None
    for i, outcome in enumerate(outcomes):
        ms, error = (
            (outcome, "") if isinstance(outcome, float) else (10.0, "" if outcome == "ok" else outcome)
        )
        status = "error" if error else "ok"
        tally.observe(TraceRecord(f"{i:032x}", datetime.now(UTC), "chat", "fake", status, ms, error=error,
                                  attributes=attrs))  # fmt: skip
        first = i if first is None and tally.tripped else first
    flagged = tally.take()
    if not says:
        assert flagged == []
        return
    assert first == len(outcomes) - 1  # the 10th request (min_samples) crossed it
    assert [(e, v) for e, v, _ in flagged] == [("tone", "b")]
    assert says in flagged[0][2]
