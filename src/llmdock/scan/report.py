"""The scan report: one self-contained HTML page (the evaluation report's style, environment and SVG bars)
and the same data as JSON beside it, both made from the data alone (:meth:`ScanResult.data`, which the
store keeps: :mod:`llmdock.scan.stored`)."""

from __future__ import annotations

import json
from typing import Any

from llmdock.evaluate.report import environment
from llmdock.evaluate.report_svg import bar_plot
from llmdock.evaluate.stats import wilson


def to_json(data: dict[str, Any]) -> str:
    """The report's JSON: ``data`` as :meth:`ScanResult.data` gives it (or the store kept it)."""
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def plots(data: dict[str, Any]) -> list[str]:
    """Per category and target: the share of judged probes that found something, and (when any guard
    stopped one) the share the guards stopped, each with its Wilson 95 % interval."""
    tallies = [(f"{t['category']} · {t['target']}", t["counts"]) for t in data["tallies"]]
    judged = [(label, c, c["found"] + c["blocked"] + c["resisted"]) for label, c in tallies]
    found = [(label, wilson(c["found"], n)) for label, c, n in judged]
    out = [bar_plot("probes that found something (share, 95 % CI)", found)]
    if any(c["blocked"] for _, c, _ in judged):
        stopped = [(label, wilson(c["blocked"], n)) for label, c, n in judged]
        out.append(bar_plot("probes the guards stopped (share, 95 % CI)", stopped))
    return out


def to_html(data: dict[str, Any]) -> str:
    """The self-contained page, from ``data`` alone: the same page whether the scan just ran or the store
    kept it (``llmdock scan report RUN``)."""
    template = environment("llmdock.scan").get_template("scan.html.j2")
    return template.render(d=data, plots=plots(data))
