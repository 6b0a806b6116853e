"""Retention and sampling per model and team, on SQLite and on a throwaway PostgreSQL server: which traces a
purge deletes (and the online evaluator's claims with them), what a sampled-out trace keeps, and the
``file:line: field`` errors of a rule that cannot match."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from llmdock.config import Settings, load_settings
from llmdock.errors import ConfigError
from llmdock.privacy.gdpr import erase_subject
from llmdock.runtime import Runtime
from llmdock.store import Store, TraceRecord, audit, write_traces
from llmdock.store.audit import Actor
from llmdock.store.models import Trace
from llmdock.store.monitor_eval_rows import EvalClaim
from llmdock.store.retention import purge
from llmdock.store.trace_policy import SAMPLED_OUT, RetentionPolicy, TraceSampling
from llmdock.store.trace_records import SpanRecord
from llmdock.store.usage import usage_summary
from tests.conftest import fake_settings

ACTOR = Actor("test", "trace_policy")
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MODELS = {"fake": {"backend": "fake"}, "chatty": {"backend": "fake"}}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return fake_settings(tmp_path, models=MODELS, **overrides)


def record(trace_id: str, model: str, team: str, age_days: float, **extra: Any) -> TraceRecord:
    at = NOW - timedelta(days=age_days)
    return TraceRecord(
        id=trace_id,
        created_at=at,
        operation="chat",
        model=model,
        status="ok",
        duration_ms=5.0,
        team_id=team,
        input={"messages": [{"role": "user", "content": f"question {trace_id}"}]},
        output=f"answer {trace_id}",
        spans=[SpanRecord("generate", at, 4.0)],
        **extra,
    )


def test_each_trace_is_kept_for_its_first_matching_rule_and_its_claims_go_with_it(
    store: Store, tmp_path: Path
) -> None:
    rules = [
        {"team": "t-audit", "traces_days": None},  # this team's traces are kept, whatever the model
        {"model": "chatty", "traces_days": 7},
        {"model": ["fake"], "team": ["t-short"], "traces_days": 1},
    ]
    policy = RetentionPolicy.from_settings(settings(tmp_path, retention={"traces_days": 30, "rules": rules}))
    ages = {"new": 0.5, "week": 8, "month": 31}
    records = [
        record(f"{model}-{team}-{age}", model, team, days)
        for model in ("fake", "chatty")
        for team in ("t-audit", "t-short", "")
        for age, days in ages.items()
    ]
    write_traces(store, records)
    with store.session() as s, s.begin():
        for r in records:
            s.add(EvalClaim(rule="r", trace_id=r.id, trace_created_at=r.created_at, claimed_at=NOW))

    assert purge(store, policy, ACTOR, now=NOW) == 7

    with store.session() as s:
        kept = set(s.scalars(select(Trace.id)))
        claimed = set(s.scalars(select(EvalClaim.trace_id)))
    assert kept == {
        *(f"{m}-t-audit-{a}" for m in ("fake", "chatty") for a in ages),  # kept: the first rule
        "chatty-t-short-new",
        "chatty--new",  # chatty: 7 days
        "fake-t-short-new",  # fake for t-short: 1 day
        "fake--new",
        "fake--week",  # fake for anyone else: the default, 30 days
    }
    assert claimed == kept
    row = audit.list_rows(store, action="retention.purge")[0]
    assert row.after is not None
    assert row.after["traces_deleted"] == 7
    assert row.after["deleted_by_rule"] == [0, 4, 2]  # the default took the other one
    assert purge(store, policy, ACTOR, now=NOW) == 0


def test_a_sampled_out_trace_keeps_usage_and_the_subject_but_no_bodies_or_spans(
    store: Store, tmp_path: Path
) -> None:
    sampling = TraceSampling.from_settings(
        settings(tmp_path, trace={"sample": 1.0, "sampling": [{"model": "chatty", "share": 0}]})
    )
    kept = record("kept", "fake", "", 0, prompt_tokens=7, completion_tokens=3, cost=0.5, subject="ann")
    out = record("out", "chatty", "", 0, prompt_tokens=7, completion_tokens=3, cost=0.5, subject="ann")
    for rec in (kept, out):
        sampling.apply(rec)
    write_traces(store, [kept, out])

    with store.session() as s:
        rows = {t.id: t for t in s.scalars(select(Trace))}
    assert rows["kept"].input
    assert rows["kept"].output
    assert rows["kept"].spans
    assert SAMPLED_OUT not in rows["kept"].attributes
    sampled = rows["out"]
    assert (sampled.input, sampled.output, sampled.spans) == ({}, "", [])
    assert sampled.attributes[SAMPLED_OUT] is True
    assert (sampled.prompt_tokens, sampled.completion_tokens, sampled.cost) == (7, 3, 0.5)
    usage = {u.model: u for u in usage_summary(store, days=400)}
    assert (usage["chatty"].requests, usage["chatty"].cost) == (1, 0.5)
    # GDPR: the subject's sampled-out traces are erased with the others.
    report = erase_subject(store, "ann", ACTOR, b"k" * 32)
    assert report["traces_deleted"] == 2


def test_sampling_keeps_the_configured_share_and_gives_a_trace_the_same_verdict_every_time(
    tmp_path: Path,
) -> None:
    sampling = TraceSampling.from_settings(
        settings(
            tmp_path,
            trace={"sample": 0.25, "sampling": [{"team": "t1", "model": "fake", "share": 0.9}]},
        )
    )
    assert sampling.share("fake", "t1") == 0.9
    assert sampling.share("fake", "t2") == sampling.share("chatty", "t1") == 0.25
    records = [record(f"{i:032x}", "chatty", "", 0) for i in range(20_000)]
    verdicts = [sampling.keeps(r) for r in records]
    assert 0.24 < sum(verdicts) / len(records) < 0.26
    assert verdicts == [sampling.keeps(r) for r in records]
    assert TraceSampling.from_settings(settings(tmp_path)).keeps_all


def test_a_rule_naming_an_unconfigured_model_or_a_share_above_one_is_refused_with_its_line(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        "include_builtin_models: false\n"
        "default_embedding_model: ''\n"
        "models:\n  fake: {backend: fake}\n"
        "default_model: fake\n"
        "retention:\n  rules:\n    - model: [fake, fkae]\n      traces_days: 3\n"
    )
    with pytest.raises(ConfigError, match="model 'fkae' is not configured") as info:
        Runtime(load_settings(cfg), with_store=False)
    assert info.value.where == f"{cfg}:8: retention.rules.0.model.1"
    cfg.write_text("trace:\n  sampling:\n    - team: t1\n      share: 1.5\n")
    with pytest.raises(ConfigError, match="less than or equal to 1") as info:
        load_settings(cfg)
    assert info.value.where == f"{cfg}:4: trace.sampling.0.share"
