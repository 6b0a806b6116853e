"""Sampled online evaluation: answered traffic through the in-process gateway is scored off the request path
(a judge on the fake backend, a regex), the scores land on the traces as feedback of source ``evaluator``,
a trace is never scored twice (not by a second look, not after a restart), and a bad rule stops the start
with its ``file:line``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from llmdock.config import ModelConfig, Settings, load_settings
from llmdock.config.monitor_settings import OnlineEvalSettings
from llmdock.errors import ConfigError
from llmdock.monitor.online_eval import OnlineEvaluator, evaluator_for
from llmdock.monitor.online_rules import build_rules, sampled
from llmdock.runtime import Runtime
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.models import Trace
from llmdock.store.monitor_eval_rows import EvalClaim, EvalCursor
from tests.conftest import Gateway, fake_settings

VERDICT = json.dumps({"reason": "It answers the question.", "score": 0.75})
MODELS = {"fake": ModelConfig(backend="fake"), "judge": ModelConfig(backend="fake", reply=VERDICT)}


def rules(sample: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "settle": 0.05,
        "rules": [
            {
                "name": "quality",
                "models": ["fake"],
                "sample": sample,
                "metrics": [
                    {"type": "llm-rubric", "name": "helpful", "value": {"rubric": "helps", "model": "judge"}},
                    {"type": "regex", "name": "answers", "value": "^fake answer"},
                ],
                **extra,
            }
        ],
    }


async def chat(gw: Gateway, n: int, model: str = "fake") -> list[str]:
    ids = []
    for i in range(n):
        body = {"model": model, "messages": [{"role": "user", "content": f"question {i}"}]}
        resp = await gw.client.post("/v1/chat/completions", json=body)
        assert resp.status_code == 200
        ids.append(resp.headers["x-llmdock-trace-id"])
    gw.flush_traces()
    await asyncio.sleep(0.06)  # past the settle line
    return ids


def evaluator(gw: Gateway) -> OnlineEvaluator:
    rt = gw.runtime
    return evaluator_for(rt.settings, rt.stage_env, rt.plugins.metrics, rt.metrics)


def scores(gw: Gateway) -> list[FeedbackRow]:
    assert gw.runtime.store is not None
    with gw.runtime.store.session() as s:
        return list(s.scalars(select(FeedbackRow).where(FeedbackRow.source == "evaluator")))


@pytest.fixture
async def gw(gateway_factory: Callable[[Settings], Any], tmp_path: Path) -> Gateway:
    settings = fake_settings(tmp_path, models=MODELS, online_eval=OnlineEvalSettings(**rules()))
    g: Gateway = await gateway_factory(settings)
    g.runtime.enable_metrics()
    return g


async def test_answered_traffic_is_scored_once_and_the_scores_land_on_the_traces(gw: Gateway) -> None:
    ev = evaluator(gw)
    assert await ev.look() == 0  # the first look starts from now: history is not scored
    ids = await chat(gw, 3)
    await chat(gw, 2, model="judge")  # another model: not this rule's traffic
    assert await ev.look() == 3
    done = await ev.drain()
    assert [d.outcome for d in done] == ["scored"] * 3
    rows = scores(gw)
    assert sorted((r.trace_id, r.name, r.value) for r in rows) == sorted(
        [(t, "helpful", 0.75) for t in ids] + [(t, "answers", 1.0) for t in ids]
    )
    helpful = next(r for r in rows if r.name == "helpful")
    assert "It answers the question." in helpful.comment
    assert helpful.created_by == "online-eval:quality"
    assert await ev.look() == 0  # read once: a second look claims nothing
    assert await ev.drain() == []
    assert len(scores(gw)) == 6
    assert gw.runtime.metrics is not None
    text = (await gw.client.get("/metrics")).text
    assert 'llmdock_online_eval_score_count{metric="helpful",model="fake"} 3.0' in text
    assert 'llmdock_online_eval_traces_total{model="fake",outcome="scored"} 3.0' in text


async def test_a_restart_scores_the_unfinished_claims_and_nothing_twice(gw: Gateway) -> None:
    first = evaluator(gw)
    await first.look()
    ids = await chat(gw, 4)
    assert await first.look() == 4  # claimed and queued, then the process "dies" before scoring
    second = evaluator(gw)  # the restarted worker: the same store
    assert await second.look() == 4  # the four unfinished claims, rescued; no new trace claimed
    assert len(await second.drain()) == 4
    assert {r.trace_id for r in scores(gw)} == set(ids)
    late = await first.drain()  # the old queue, had it survived, stores nothing a second time
    assert len(late) == 4
    assert len(scores(gw)) == 8
    assert gw.runtime.store is not None
    with gw.runtime.store.session() as s:
        outcomes = {c.outcome for c in s.scalars(select(EvalClaim))}
    assert outcomes == {"scored"}


async def test_the_sample_share_is_kept_and_fixed_per_trace(
    gateway_factory: Callable[[Settings], Any], tmp_path: Path
) -> None:
    settings = fake_settings(tmp_path, models=MODELS, online_eval=OnlineEvalSettings(**rules(sample=0.3)))
    gw: Gateway = await gateway_factory(settings)
    ev = evaluator(gw)
    await ev.look()
    ids = await chat(gw, 40)
    expected = {t for t in ids if sampled("quality", t, 0.3)}
    assert 0 < len(expected) < 40
    assert await ev.look() == len(expected)
    await ev.drain()
    assert {r.trace_id for r in scores(gw)} == expected
    share = sum(sampled("quality", f"{i:032x}", 0.3) for i in range(20_000)) / 20_000
    assert 0.29 < share < 0.31


async def test_falling_behind_skips_ahead_and_counts_what_it_dropped(gw: Gateway) -> None:
    ev = evaluator(gw)
    await ev.look()
    ids = await chat(gw, 3)
    store = gw.runtime.store
    assert store is not None
    with store.session() as s, s.begin():  # as if the evaluator had stopped two hours ago, 3 traces since
        cursor = s.get(EvalCursor, "online_eval")
        assert cursor is not None
        cursor.created_at = datetime.now(UTC) - timedelta(hours=2)
        for t in s.scalars(select(Trace).where(Trace.id.in_(ids))):
            t.created_at = datetime.now(UTC) - timedelta(hours=1)
    ev.settings = ev.settings.model_copy(update={"max_lag": 60.0})
    assert await ev.look() == 0
    text = (await gw.client.get("/metrics")).text
    assert 'llmdock_online_eval_traces_total{model="fake",outcome="dropped"} 3.0' in text


def test_a_bad_rule_names_its_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        f"home: {tmp_path}\ninclude_builtin_models: false\ndefault_embedding_model: ''\n"
        "models: {fake: {backend: fake}}\ndefault_model: fake\n"
        "online_eval:\n  rules:\n    - name: q\n      metrics:\n"
        "        - {type: regex, value: x}\n"
        "        - {type: bleu}\n"
    )
    runtime = Runtime(load_settings(cfg), with_store=False)
    with pytest.raises(ConfigError) as err:
        build_rules(runtime.settings, runtime.stage_env, runtime.plugins.metrics)
    assert "llmdock.yaml:11: online_eval.rules.0.metrics.1.type" in err.value.one_line()
    assert "reference answer" in err.value.one_line()
    cfg.write_text(cfg.read_text().replace("{type: bleu}", "{type: no-such-metric}"))
    with pytest.raises(ConfigError, match="unknown metric 'no-such-metric'"):
        build_rules(load_settings(cfg), runtime.stage_env, runtime.plugins.metrics)


def test_a_score_name_must_be_one_feedback_accepts(tmp_path: Path) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(
        "online_eval:\n  rules:\n    - name: q\n      metrics:\n        - {type: regex, name: Bad Name}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "llmdock.yaml:5" in err.value.one_line()
    assert "cannot name a score" in err.value.one_line()


async def test_an_alert_rule_watches_an_online_score(gw: Gateway) -> None:
    from llmdock.config.monitor_settings import AlertRule
    from llmdock.monitor.alerts import judge

    ev = evaluator(gw)
    await ev.look()
    await chat(gw, 3)
    await ev.look()
    await ev.drain()
    assert gw.runtime.store is not None
    rule = AlertRule(name="worse", metric="online_eval:helpful", below=0.8, window="1h", min_requests=3)
    (verdict,) = judge(rule, gw.runtime.store, datetime.now(UTC))
    assert (verdict.model, verdict.value, verdict.firing) == ("fake", 0.75, True)
    fine = rule.model_copy(update={"below": 0.5})
    assert not judge(fine, gw.runtime.store, datetime.now(UTC))[0].firing


async def test_experiments_report_online_scores_per_variant_beside_the_feedback(
    gateway_factory: Callable[[Settings], Any], tmp_path: Path
) -> None:
    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.report import experiment_report
    from tests.unit.test_experiments import ME, ask, push_versions, spec

    online = {
        "settle": 0.05,
        "rules": [
            {
                "name": "tone",
                "sample": 1.0,
                "metrics": [{"type": "icontains", "name": "detailed", "value": "detail"}],
            }
        ],
    }
    settings = fake_settings(tmp_path, online_eval=OnlineEvalSettings(**online))
    gw: Gateway = await gateway_factory(settings)
    store = gw.runtime.store
    assert store is not None
    assert gw.runtime.experiments is not None
    push_versions(store)
    book = ExperimentBook(store)
    book.create(spec("tone"), ME, {"fake", "fake-embed"})
    assert gw.runtime.experiments.load()
    ev = evaluator(gw)
    await ev.look()
    for i in range(30):
        assert (await gw.client.post("/v1/chat/completions", json=ask(f"user-{i}"))).status_code == 200
    gw.flush_traces()
    await asyncio.sleep(0.06)
    assert await ev.look() == 30
    await ev.drain()
    report = experiment_report(store, book.get("tone"))
    a, b = report.variants
    assert a["online_eval"]["detailed"]["mean"] == 0.0  # version 1 answers briefly
    assert b["online_eval"]["detailed"]["mean"] == 1.0  # version 2 "in detail"
    assert a["online_eval"]["detailed"]["n"] + b["online_eval"]["detailed"]["n"] == 30
    assert a["scores"] == b["scores"] == {}  # no user feedback: the evaluator's scores are kept apart
    (diff,) = [d for d in report.differences["b"] if d.measure == "online eval: detailed"]
    assert (diff.mean_a, diff.mean_b, diff.test) == (0.0, 1.0, "Welch's t")
