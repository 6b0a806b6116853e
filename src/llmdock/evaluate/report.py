"""``llmdock eval report``: one or more runs as a single self-contained HTML page, and the same data as JSON.

The page needs nothing from the network: inline CSS, inline SVG plots (``report_svg``) and a few lines of
inline script that filter the case browser (text, verdict, target, run; also read from the URL's
``#q=…&verdict=…&target=…&run=…``). Everything from the data goes through Jinja2's autoescape: an answer
is shown as text, never as markup. With two or more runs the first two are compared (B against A).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2

from llmdock.evaluate.case import CaseResult
from llmdock.evaluate.compare import Comparison, TargetComparison, compare
from llmdock.evaluate.report_svg import Delta, bar_plot, fmt, forest_plot, strip_plot
from llmdock.evaluate.results import as_case_result, get_run, result_rows
from llmdock.evaluate.stats import PASS_RATE, SCORE, Estimate, TargetSummary, lower_is_better, summarize
from llmdock.store.engine import Store

Key = tuple[str, str, int]  # target, case id, repeat


@dataclass(frozen=True, slots=True)
class ReportRun:
    """One stored run as the report needs it: its header, its results, and each result's case."""

    id: str
    suite: str
    status: str
    created_at: datetime | None
    finished_at: datetime | None
    n_expected: int
    created_by: str
    results: list[CaseResult]
    cases: dict[Key, dict[str, Any]] = field(default_factory=dict)  # input, messages, expected


def load_run(store: Store, ref: str) -> ReportRun:
    """A run by id or unique prefix, with its results and cases."""
    run = get_run(store, ref)
    rows = result_rows(store, run.id)
    return ReportRun(
        id=run.id,
        suite=run.suite,
        status=run.status,
        created_at=run.created_at,
        finished_at=run.finished_at,
        n_expected=run.n_expected,
        created_by=run.created_by,
        results=[as_case_result(r) for r in rows],
        cases={(r.target, r.case_id, r.repeat): dict(r.input or {}) for r in rows},
    )


@dataclass(frozen=True, slots=True)
class Report:
    runs: list[ReportRun]
    names: list[str]  # "A", "B", … (empty strings when there is one run)
    summaries: list[list[TargetSummary]]
    comparison: Comparison | None
    checks: list[str]  # every check label, in first-appearance order
    rows: list[dict[str, Any]]


def build(runs: list[ReportRun], alpha: float = 0.05) -> Report:
    """Summaries per run, the comparison of the first two runs, and one row per result."""
    names = [chr(ord("A") + i) if len(runs) > 1 else "" for i in range(len(runs))]
    comparison = compare(runs[0].results, runs[1].results, alpha=alpha) if len(runs) > 1 else None
    checks = list(dict.fromkeys(label for run in runs for r in run.results for label in r.scores))
    rows = [_row(name, run, r) for name, run in zip(names, runs, strict=True) for r in run.results]
    return Report(runs, names, [summarize(run.results) for run in runs], comparison, checks, rows)


def _row(name: str, run: ReportRun, r: CaseResult) -> dict[str, Any]:
    case = run.cases.get((r.target, r.case_id, r.repeat), {})
    return {
        "run": name,
        "run_id": run.id,
        "target": r.target,
        "case_id": r.case_id,
        "repeat": r.repeat,
        "verdict": "error" if r.error else ("pass" if r.passed else "fail"),
        "score": r.score,
        "checks": {k: dataclasses.asdict(v) for k, v in r.scores.items()},
        "input": _input_text(case),
        "expected": case.get("expected"),
        "answer": r.output.text,
        "error": r.error,
        "latency_ms": r.output.latency_ms,
        "completion_tokens": r.output.completion_tokens,
    }


def _input_text(case: dict[str, Any]) -> str:
    if case.get("input") is not None:
        return str(case["input"])
    messages = case.get("messages") or []
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else (json.dumps(messages, ensure_ascii=False) if messages else "")


# -- JSON ------------------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    """``report.json``: the runs' headers, each run's summaries, the comparison, and the rows."""
    data = {
        "runs": [_header(name, run) for name, run in zip(report.names, report.runs, strict=True)],
        "summaries": [
            {"run": name, "run_id": run.id, "targets": [dataclasses.asdict(s) for s in summaries]}
            for name, run, summaries in zip(report.names, report.runs, report.summaries, strict=True)
        ],
        "comparison": _comparison_json(report.comparison, report.runs),
        "rows": report.rows,
    }
    return json.dumps(_finite(data), ensure_ascii=False, indent=1, default=str) + "\n"


def _header(name: str, run: ReportRun) -> dict[str, Any]:
    return {
        "run": name,
        "id": run.id,
        "suite": run.suite,
        "status": run.status,
        "created_at": _time(run.created_at),
        "finished_at": _time(run.finished_at),
        "created_by": run.created_by,
        "n_expected": run.n_expected,
        "n_results": len(run.results),
        "targets": list(dict.fromkeys(r.target for r in run.results)),
    }


def _time(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else None


def _comparison_json(comparison: Comparison | None, runs: list[ReportRun]) -> dict[str, Any] | None:
    if comparison is None:
        return None
    data = dataclasses.asdict(comparison)
    data["run_a"], data["run_b"] = runs[0].id, runs[1].id
    data["changed_cases"] = [
        {**dataclasses.asdict(c), "regression": c.regression, "flipped": c.flipped}
        for c in comparison.changed_cases
    ]
    return data


def _finite(value: Any) -> Any:
    """NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# -- HTML ------------------------------------------------------------------------------------------


def _series_name(run_name: str, target: str) -> str:
    return f"{run_name} · {target}" if run_name else target


def _plots(report: Report) -> dict[str, list[str]]:
    """The SVGs: per measure the bars with CIs and the distribution, and the comparison's forest plots."""
    labels = [PASS_RATE, SCORE, *report.checks]
    bars, distributions = [], []
    for label in labels:
        estimates = [
            (
                _series_name(name, s.target),
                s.estimate(label) or Estimate(math.nan, math.nan, math.nan, 0, "none"),
            )
            for name, summaries in zip(report.names, report.summaries, strict=True)
            for s in summaries
        ]
        bars.append(bar_plot(f"{label}: mean with 95 % CI", estimates))
        if label == PASS_RATE:
            continue
        values = [
            (_series_name(name, target), _values(run, target, label))
            for name, run in zip(report.names, report.runs, strict=True)
            for target in dict.fromkeys(r.target for r in run.results)
        ]
        distributions.append(strip_plot(f"{label}: distribution over results", values))
    deltas = [p for t in report.comparison.targets for p in _forests(t)] if report.comparison else []
    return {"bars": bars, "distributions": distributions, "deltas": deltas}


def _values(run: ReportRun, target: str, label: str) -> list[float]:
    found = []
    for r in run.results:
        if r.target != target or r.error:
            continue
        if label == SCORE:
            found.append(r.score)
        elif label in r.scores:
            found.append(r.scores[label].value)
    return found


def _forests(t: TargetComparison) -> list[str]:
    """One forest plot for the measures on a 0..1 scale, and one for each other (latency, length…): a
    latency of 0.4 ms is not a share."""
    unit: list[Delta] = []
    other: list[Delta] = []
    for label, test in t.tests.items():
        row = Delta(label, test.delta, test.p_value, test.significant)
        bounded = not lower_is_better(label) and all(
            0.0 <= v <= 1.0 for v in (test.mean_a, test.mean_b) if math.isfinite(v)
        )
        (unit if bounded else other).append(row)
    plots = [forest_plot(f"{t.name}: B - A, paired by case", unit)] if unit else []
    plots += [forest_plot(f"{t.name}: {row.label}, B - A", [row]) for row in other]
    return plots


def environment(*packages: str) -> jinja2.Environment:
    """The report pages' Jinja2 environment: the templates of ``packages`` (each its ``templates`` folder)
    before this package's own (the shared style, ``style.css.j2``), autoescaped, with the number filters."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in (*packages, "llmdock.evaluate")]
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every template, whatever its name: data is text, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt
    env.filters["signed"] = lambda v: fmt(v, signed=True)
    return env


def to_html(report: Report) -> str:
    """The page. The SVGs were escaped where they were drawn; everything else is escaped by Jinja2."""
    template = environment().get_template("report.html.j2")
    return template.render(
        report=report,
        headers=[_header(name, run) for name, run in zip(report.names, report.runs, strict=True)],
        plots=_plots(report),
        targets=list(dict.fromkeys(row["target"] for row in report.rows)),
        pass_rate=PASS_RATE,
        score=SCORE,
    )
