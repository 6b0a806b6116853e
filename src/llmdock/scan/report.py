"""The scan report: one self-contained HTML page (the evaluation report's style, environment and SVG bars)
and the same data as JSON beside it."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from llmdock.evaluate.report import environment
from llmdock.evaluate.report_svg import bar_plot
from llmdock.evaluate.stats import wilson
from llmdock.scan.findings import is_reference, prompt_text, status_of
from llmdock.scan.probes import CATEGORIES
from llmdock.scan.run import ScanResult


def data(result: ScanResult) -> dict[str, Any]:
    """Everything the page shows: the options, each target's pipeline, tallies, findings, corpora, probes."""
    probes = []
    for r in sorted(result.results, key=lambda r: (r.target, r.case_id)):
        case = result.cases[r.case_id]
        status, why = status_of(case, r, result.groups.get((r.target, r.case_id)), result.blocked)
        if is_reference(case) and not r.error:
            why = "the reference the group's other answers are compared with"
        probes.append(
            {
                "target": r.target,
                "case_id": r.case_id,
                "category": case.metadata["category"],
                "source": case.metadata["source"],
                "status": status,
                "why": why,
                "messages": case.messages,
                "prompt": prompt_text(case),
                "output": r.output.text,
            }
        )
    return {
        "run_id": result.run_id,
        "options": dataclasses.asdict(result.options),
        "pipelines": result.pipelines,
        "categories": {c.name: dataclasses.asdict(c) for c in CATEGORIES.values()},
        "tallies": [{**dataclasses.asdict(t), "found_rate": t.found_rate} for t in result.tallies],
        "findings": [{**dataclasses.asdict(f), "rate": f.rate} for f in result.findings],
        "sentiment": [{**dataclasses.asdict(g), "sentence": g.sentence} for g in result.sentiment],
        "corpora": [dataclasses.asdict(c) for c in result.corpora],
        "probes": probes,
    }


def to_json(result: ScanResult) -> str:
    return json.dumps(data(result), ensure_ascii=False, indent=1) + "\n"


def plots(result: ScanResult) -> list[str]:
    """Per category and target: the share of judged probes that found something, and (when any guard
    stopped one) the share the guards stopped, each with its Wilson 95 % interval."""
    found = [(f"{t.category} · {t.target}", wilson(t.counts["found"], t.judged)) for t in result.tallies]
    out = [bar_plot("probes that found something (share, 95 % CI)", found)]
    if any(t.counts["blocked"] for t in result.tallies):
        stopped = [
            (f"{t.category} · {t.target}", wilson(t.counts["blocked"], t.judged)) for t in result.tallies
        ]
        out.append(bar_plot("probes the guards stopped (share, 95 % CI)", stopped))
    return out


def to_html(result: ScanResult) -> str:
    template = environment("llmdock.scan").get_template("scan.html.j2")
    return template.render(d=data(result), plots=plots(result))
