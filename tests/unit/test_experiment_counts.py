"""The experiment page's figures, which the database now adds up (``experiments.results``: counts and sums per
variant and status in one grouped query, the latency percentiles read at their rank, the feedback in one join),
against the same figures computed plainly in Python over the raw traces and feedback — on SQLite and on
PostgreSQL. Traces of another experiment, of a variant the experiment does not have, without a variant, and
from before its start are left out; errors, guard blocks (``content_policy:`` errors, also on a trace not marked
as an error), costs, ties in latency, feedback of users and of the online evaluator all count."""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from llmdock.evaluate.stats import mean_ci, wilson
from llmdock.experiments.book import ExperimentBook
from llmdock.experiments.report import experiment_report
from llmdock.experiments.sequential import Difference, compare_means, compare_rates
from llmdock.experiments.spec import ExperimentSpec, VariantSpec
from llmdock.gateway import create_app
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from llmdock.store.experiment_rows import ExperimentRow
from llmdock.store.feedback_rows import FeedbackRow
from llmdock.store.trace_records import TraceRecord
from llmdock.store.traces import write_traces
from tests.conftest import fake_settings

NOW = datetime.now(UTC)
START = NOW - timedelta(hours=2)
ACTOR = Actor("test", "experiment-counts")


def made_up(rng: random.Random) -> tuple[list[TraceRecord], list[FeedbackRow]]:
    traces, feedback = [], []
    for i in range(600):
        attributes: dict[str, Any] = {
            "llmdock.experiment": "tone",
            "llmdock.experiment_variant": rng.choice("aab"),
        }
        if i % 23 == 0:
            attributes["llmdock.experiment_variant"] = "zzz"  # not one of the experiment's variants
        elif i % 29 == 0:
            attributes["llmdock.experiment"] = "other"
        elif i % 31 == 0:
            del attributes["llmdock.experiment_variant"]
        elif i % 37 == 0:
            attributes = {}
        failed = rng.random() < 0.12
        error = rng.choice(["content_policy: blocked", "backend_error: down"]) if failed else ""
        if i % 41 == 0:
            error = "content_policy: flagged but answered"  # a block counted on an "ok" trace too
        ms = rng.choice([120.0, 250.5]) if i % 7 == 0 else rng.lognormvariate(5.5, 0.7)  # ties
        traces.append(
            TraceRecord(
                id=f"{i:032x}", created_at=NOW - timedelta(minutes=rng.uniform(1, 150)), operation="chat",
                model="fake", status="error" if failed else "ok", duration_ms=ms, error=error,
                prompt_tokens=rng.randint(5, 200), completion_tokens=rng.randint(0, 90),
                cost=rng.choice([0.0, 0.0004, 0.0123]), attributes=attributes,
            )
        )  # fmt: skip
        for k in range(rng.choice([0, 0, 0, 1, 2])):
            name, value, source = rng.choice(
                [("thumbs", float(rng.random() < 0.6), "user"), ("rating", float(rng.randint(1, 5)), "user"),
                 ("relevance", rng.random(), "evaluator"), ("thumbs", None, "user")]
            )  # fmt: skip
            feedback.append(
                FeedbackRow(
                    id=f"f{i:05d}{k}", trace_id=f"{i:032x}", created_at=NOW - timedelta(seconds=10_000 - 10 * i - k),
                    name=name, value=value, source=source,
                )
            )  # fmt: skip
    return traces, feedback


def plainly(row: ExperimentRow, traces: list[TraceRecord], feedback: list[FeedbackRow]) -> dict[str, Any]:
    """Per variant what the report shows, straight from the records, and each variant against the control."""
    per: dict[str, dict[str, Any]] = {
        v["name"]: {"n": 0, "errors": 0, "blocked": 0, "ms": [], "tokens": [], "cost": 0.0, "scores": {},
                    "online": {}}
        for v in row.variants
    }  # fmt: skip
    of: dict[str, str] = {}
    for t in traces:
        v = t.attributes.get("llmdock.experiment_variant")
        if t.attributes.get("llmdock.experiment") != "tone" or t.created_at < START or v not in per:
            continue
        of[t.id] = v
        p = per[v]
        p["n"] += 1
        p["errors"] += t.status == "error"
        p["blocked"] += t.error.startswith("content_policy:")
        p["cost"] += t.cost
        if t.status == "ok":
            p["ms"].append(t.duration_ms)
            p["tokens"].append(t.prompt_tokens + t.completion_tokens)
    for f in sorted(feedback, key=lambda f: (f.created_at, f.id)):
        if f.trace_id in of and f.value is not None:
            where = per[of[f.trace_id]]["online" if f.source == "evaluator" else "scores"]
            where.setdefault(f.name, []).append(f.value)
    views = {}
    for name, p in per.items():
        scores = {}
        for score, values in p["scores"].items():
            est = wilson(int(sum(values)), len(values)) if score == "thumbs" else mean_ci(values)
            scores["thumbs-up rate" if score == "thumbs" else score] = (est.n, est.mean, est.low, est.high)
        online = {
            k: (e.n, e.mean, e.low, e.high) for k, e in ((k, mean_ci(v)) for k, v in p["online"].items())
        }
        views[name] = {
            "requests": p["n"], "errors": p["errors"], "error_rate": p["errors"] / p["n"],
            "guard_blocked": p["blocked"], "latency_p50_ms": float(np.percentile(p["ms"], 50)),
            "latency_p95_ms": float(np.percentile(p["ms"], 95)),
            "mean_tokens": sum(p["tokens"]) / len(p["tokens"]), "cost": p["cost"],
            "feedback": sum(len(v) for v in p["scores"].values()), "scores": scores, "online_eval": online,
        }  # fmt: skip
    a, b = per["a"], per["b"]
    ta, tb = a["scores"].get("thumbs", []), b["scores"].get("thumbs", [])
    differences = [
        compare_rates("error rate", a["errors"], a["n"], b["errors"], b["n"]),
        compare_means("latency ms", a["ms"], b["ms"]),
        compare_rates("thumbs-up rate", int(sum(ta)), len(ta), int(sum(tb)), len(tb)),
        *(compare_means(k, a["scores"][k], b["scores"][k]) for k in sorted(set(a["scores"]) & set(b["scores"]) - {"thumbs"})),
        *(compare_means("online eval: " + k, a["online"][k], b["online"][k]) for k in sorted(set(a["online"]) & set(b["online"]))),
    ]  # fmt: skip
    return {"variants": views, "differences": [d for d in differences if d is not None]}


def same(found: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert set(found) == set(expected), where
        for k in expected:
            same(found[k], expected[k], f"{where}.{k}")
    elif isinstance(expected, tuple | list):
        assert len(found) == len(expected), where
        for i, (f, e) in enumerate(zip(found, expected, strict=True)):
            same(f, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(found, str):
        assert found == pytest.approx(expected, rel=1e-9, abs=1e-12, nan_ok=True), where
    else:
        assert found == expected, where


def test_the_experiment_page_adds_up_what_the_raw_traces_give(db_url: str, tmp_path: Path) -> None:
    runtime = Runtime(fake_settings(tmp_path, database_url=db_url))
    store = runtime.store
    assert store is not None
    variants = [VariantSpec("a", model="fake", weight=60), VariantSpec("b", model="fake", weight=40)]
    row = ExperimentBook(store).create(
        ExperimentSpec("tone", variants, match={"model": "fake"}, starts_at=START), ACTOR, {"fake"}
    )
    traces, feedback = made_up(random.Random(23))
    write_traces(store, traces, yield_gil=False)
    with store.session() as s, s.begin():
        s.add_all(feedback)
    expected = plainly(row, traces, feedback)

    report = experiment_report(store, row)
    for view in report.variants:
        shown = {k: view[k] for k in expected["variants"][view["name"]] if k not in ("scores", "online_eval")}
        shown["scores"] = {k: (s["n"], s["mean"], s["low"], s["high"]) for k, s in view["scores"].items()}
        shown["online_eval"] = {
            k: (s["n"], s["mean"], s["low"], s["high"]) for k, s in view["online_eval"].items()
        }
        same(shown, expected["variants"][view["name"]], view["name"])
    found: list[Difference] = report.differences["b"]
    assert [d.measure for d in found] == [d.measure for d in expected["differences"]]
    for d, e in zip(found, expected["differences"], strict=True):
        same([getattr(d, f) for f in d.__slots__], [getattr(e, f) for f in e.__slots__], d.measure)

    with TestClient(create_app(runtime)) as client:  # closes the runtime when it leaves
        page = client.get("/ui/experiments/tone").text
    cells = re.findall(
        r'<td class="num">\d+ %</td><td class="num">(\d+)</td><td class="num">(\d+) \(([\d.]+) %\)</td>'
        r'<td class="num">(\d+)</td>\s*<td class="num">(\d+) / (\d+)</td><td class="num">([\d.]+)</td>'
        r'<td class="num">([^<]+)</td>',
        page,
    )
    views = expected["variants"]
    assert cells == [
        (str(v["requests"]), str(v["errors"]), f"{100 * v['error_rate']:.1f}", str(v["guard_blocked"]),
         f"{v['latency_p50_ms']:.0f}", f"{v['latency_p95_ms']:.0f}", f"{v['mean_tokens']:.1f}", f"{v['cost']:.4g}")
        for v in (views["a"], views["b"])
    ]  # fmt: skip
    assert not math.isnan(views["a"]["latency_p95_ms"])
