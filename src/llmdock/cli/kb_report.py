"""What ``llmdock kb evaluate`` prints: the retriever's modes side by side, the generator's judged scores with
95 % intervals, and which component failed each question."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

COMPONENTS = ("router", "rewriter", "retriever", "generator", "knowledge base", "ok")


def _cell(est: Any) -> str:
    if est is None or est.empty:
        return "-"
    if math.isclose(est.low, est.high):
        return f"{est.mean:.3f}"
    low, high = (
        max(est.low, 0.0),
        min(est.high, 1.0),
    )  # every measure here is a share: a t-interval may overrun
    return f"{est.mean:.3f} ({low:.2f}-{high:.2f})"


def _est(e: Any) -> dict[str, float]:
    return {"mean": e.mean, "low": e.low, "high": e.high, "n": e.n}


def _estimates(summary: Any) -> dict[str, dict[str, float]]:
    return {label: _est(e) for label, e in summary.metrics.items() if not e.empty}


def rewriter_pairs(report: Any) -> dict[str, tuple[Any, Any]]:
    """Per rewriter: the follow-up questions' retrieval summaries (without the rewrite, with it)."""
    from llmdock.evaluate.stats import summarize

    found = {}
    for target in dict.fromkeys(r.target for r in report.results if r.target.startswith("rewriter:")):
        mine = [r for r in report.results if r.target == target]
        ids = {r.case_id for r in mine}
        plain = [r for r in report.results if r.target == f"retriever:{report.mode}" and r.case_id in ids]
        found[target.split(":", 1)[1]] = (summarize(plain)[0], summarize(mine)[0])
    return found


def print_kb_report(report: Any, as_json: bool) -> None:
    from llmdock.evaluate.stats import summarize

    summaries = summarize(report.results)
    retrievers = [s for s in summaries if s.target.startswith("retriever:")]
    generators = [s for s in summaries if s.target.startswith("generator:")]
    routers = [s for s in summaries if s.target.startswith("router:")]
    rewriters = rewriter_pairs(report)
    counts = Counter(report.diagnosis.values())
    if as_json:
        data = {
            "run": report.run_id,
            "retriever": {s.target.split(":", 1)[1]: _estimates(s) for s in retrievers},
            "rewriter": {
                m: {"without": _estimates(a), "with": _estimates(b), "questions": b.n_cases}
                for m, (a, b) in rewriters.items()
            },
            "router": {s.target.split(":", 1)[1]: _estimates(s) for s in routers},
            "generator": {s.target.split(":", 1)[1]: _estimates(s) for s in generators},
            "judge_noise": {
                label: {"sd": _est(n.sd), "disagree": _est(n.disagree), "answers": n.answers}
                for label, n in report.judge_noise.items()
            },
            "errored": {s.target: s.errored for s in summaries if s.errored},
            "diagnosis": {c: counts.get(c, 0) for c in COMPONENTS},
            "fix_first": report.fix_first(),
            "stale_source_chunks": report.stale_chunks,
        }
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console()
    if retrievers:
        labels = list(dict.fromkeys(label for s in retrievers for label in s.metrics))
        table = Table(title="retriever (mean, 95 % CI over questions)", title_justify="left")
        table.add_column("mode")
        for label in labels:
            table.add_column(label, justify="right")
        for s in retrievers:
            table.add_row(s.target.split(":", 1)[1], *(_cell(s.metrics.get(label)) for label in labels))
        console.print(table)
    for model, (without, with_) in rewriters.items():
        title = f"rewriter {model}: {with_.n_cases} follow-up questions, {report.mode} retrieval"
        table = Table("", *without.metrics, title=title, title_justify="left")
        for name, est in (("as asked", without), ("rewritten", with_)):
            table.add_row(name, *(_cell(est.metrics.get(label)) for label in without.metrics))
        console.print(table)
    for s in routers:
        routed = s.metrics.get("routed")
        typer.echo(
            f"{report.modes.get(s.target, s.target)}: {_cell(routed)} of {s.n_cases} questions routed to "
            "the knowledge base they came from"
        )
    for s in generators:
        title = f"{report.modes.get(s.target, s.target)}: {s.n_cases} questions x {s.repeats}, {s.errored} errored"
        table = Table("judged", "mean", "95 % CI", title=title, title_justify="left")
        for label, e in s.metrics.items():
            table.add_row(label, f"{e.mean:.3f}", "-" if e.empty else f"{e.low:.3f} - {e.high:.3f}")
        if s.flakiness is not None:
            table.add_row("flaky verdicts", f"{s.flakiness:.3f}", "share of questions whose repeats disagree")
        console.print(table)
    if report.judge_noise:
        title = "judge noise: the same answer judged again (mean, 95 % CI over answers)"
        table = Table(
            "judged", "sd of its values", "verdicts split", "answers", title=title, title_justify="left"
        )
        for label, n in report.judge_noise.items():
            table.add_row(label, _cell(n.sd), _cell(n.disagree), str(n.answers))
        console.print(table)
    found = ", ".join(f"{c} {counts.get(c, 0)}" for c in COMPONENTS)
    typer.echo(f"failed by component: {found}; fix first: {report.fix_first()}")
    if report.stale_chunks:
        typer.echo(
            f"{report.stale_chunks} source chunks are no longer in the knowledge base (re-ingested since the "
            "test set was made): generate it again",
            err=True,
        )
    typer.echo(f"run {report.run_id}: llmdock eval show {report.run_id[:12]}", err=True)
