"""Evaluations: the stored runs, one run's summary per target (pass rate, score and each check's mean with
its 95 % interval, latency, cost, errors), the run's full HTML report (plots, case browser) as
``llmdock eval report`` writes it, two runs compared with the regressions first, and a scan's findings
(``llmdock.scan``, kept in the store). Runs are shared by every team, as for the CLI.

``llmdock.evaluate`` (numpy, scipy) is imported when a page is first asked for, not when the gateway starts.
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from llmdock.errors import InvalidRequest
from llmdock.store.engine import Store
from llmdock.store.models import ScanReport
from llmdock.ui.pages import HEADERS, Ui, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

# The report is one self-contained page with its own inline script and styles: allowed to run them, and
# nothing else (no request leaves the page).
REPORT_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
RUNS_SHOWN = 100
RUN_REF = re.compile(r"[A-Za-z0-9_-]{1,64}")


async def evaluations(request: Request, viewer: Viewer, ui: Ui) -> Response:
    from llmdock.evaluate.results import list_runs

    runs = await asyncio.to_thread(list_runs, store_of(ui), RUNS_SHOWN)
    return render(request, "evaluations.html", viewer, runs=runs)


def _summary(ui: Ui, run_id: str) -> dict[str, Any]:
    from llmdock.evaluate.report import load_run
    from llmdock.evaluate.stats import summarize

    run = load_run(store_of(ui), run_id)
    with store_of(ui).session() as s:
        scan = s.get(ScanReport, run.id) is not None
    return {"run": run, "summaries": summarize(run.results), "scan": scan}


async def evaluation(request: Request, viewer: Viewer, ui: Ui) -> Response:
    data = await asyncio.to_thread(_summary, ui, request.path_params["run_id"])
    return render(request, "evaluation.html", viewer, **data)


def _report_html(ui: Ui, run_id: str) -> str:
    from llmdock.evaluate.report import build, load_run, to_html

    return to_html(build([load_run(store_of(ui), run_id)]))


async def report(request: Request, viewer: Viewer, ui: Ui) -> Response:
    html = await asyncio.to_thread(_report_html, ui, request.path_params["run_id"])
    return HTMLResponse(html, headers={**HEADERS, "content-security-policy": REPORT_CSP})


@lru_cache(maxsize=16)
def _finished_comparison(store: Store, a: str, b: str) -> dict[str, Any]:
    """Two finished runs compared (their results no longer change): kept, since the bootstrap intervals of a
    few hundred cases take seconds."""
    from llmdock.evaluate.compare import compare
    from llmdock.evaluate.report import load_run

    run_a, run_b = load_run(store, a), load_run(store, b)
    return {"a": run_a, "b": run_b, "comparison": compare(run_a.results, run_b.results)}


def _compare(ui: Ui, a: str, b: str) -> dict[str, Any]:
    from llmdock.evaluate.results import get_run

    store = store_of(ui)
    run_a, run_b = get_run(store, a), get_run(store, b)
    if run_a.status == run_b.status == "done":
        return _finished_comparison(store, run_a.id, run_b.id)
    return _finished_comparison.__wrapped__(store, run_a.id, run_b.id)


async def comparison(request: Request, viewer: Viewer, ui: Ui) -> Response:
    """Run B against run A (the baseline): per metric the paired test, then the changed cases, regressions
    first (``evaluate.compare``, as ``llmdock eval compare``)."""
    refs = {}
    for side in ("a", "b"):
        ref = request.query_params.get(side, "").strip()
        if not RUN_REF.fullmatch(ref):
            raise InvalidRequest(f"{side}: a run id (or the start of one), not {ref[:40]!r}", param=side)
        refs[side] = ref
    data = await asyncio.to_thread(_compare, ui, refs["a"], refs["b"])
    return render(request, "eval_compare.html", viewer, **data)


def _scan(ui: Ui, run_id: str) -> dict[str, Any]:
    from llmdock.scan.stored import load_report

    data = load_report(store_of(ui), run_id)
    rank = {s: i for i, s in enumerate(("critical", "high", "medium", "low"))}
    findings = sorted(data.get("findings", []), key=lambda f: (rank.get(f["severity"], 9), -f["rate"]))
    return {"run_id": data.get("run_id", run_id), "findings": findings, "tallies": data.get("tallies", [])}


async def scan(request: Request, viewer: Viewer, ui: Ui) -> Response:
    """A scan's findings, most severe first, with their examples and how each category's probes ended."""
    data = await asyncio.to_thread(_scan, ui, request.path_params["run_id"])
    return render(request, "scan.html", viewer, **data)


ROUTES = [
    ("/evaluations", "GET", evaluations, False),
    ("/evaluations/compare", "GET", comparison, False),
    ("/evaluations/{run_id}", "GET", evaluation, False),
    ("/evaluations/{run_id}/report", "GET", report, False),
    ("/evaluations/{run_id}/scan", "GET", scan, False),
]
