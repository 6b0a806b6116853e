"""Evaluations: the stored runs, one run's summary per target (pass rate, score and each check's mean with
its 95 % interval, latency, cost, errors) and the run's full HTML report (plots, case browser) as
``llmdock eval report`` writes it. Runs are shared by every team, as for the CLI.

``llmdock.evaluate`` (numpy, scipy) is imported when a page is first asked for, not when the gateway starts.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from llmdock.ui.pages import HEADERS, Ui, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

# The report is one self-contained page with its own inline script and styles: allowed to run them, and
# nothing else (no request leaves the page).
REPORT_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
RUNS_SHOWN = 100


async def evaluations(request: Request, viewer: Viewer, ui: Ui) -> Response:
    from llmdock.evaluate.results import list_runs

    runs = await asyncio.to_thread(list_runs, store_of(ui), RUNS_SHOWN)
    return render(request, "evaluations.html", viewer, runs=runs)


def _summary(ui: Ui, run_id: str) -> dict[str, Any]:
    from llmdock.evaluate.report import load_run
    from llmdock.evaluate.stats import summarize

    run = load_run(store_of(ui), run_id)
    return {"run": run, "summaries": summarize(run.results)}


async def evaluation(request: Request, viewer: Viewer, ui: Ui) -> Response:
    data = await asyncio.to_thread(_summary, ui, request.path_params["run_id"])
    return render(request, "evaluation.html", viewer, **data)


def _report_html(ui: Ui, run_id: str) -> str:
    from llmdock.evaluate.report import build, load_run, to_html

    return to_html(build([load_run(store_of(ui), run_id)]))


async def report(request: Request, viewer: Viewer, ui: Ui) -> Response:
    html = await asyncio.to_thread(_report_html, ui, request.path_params["run_id"])
    return HTMLResponse(html, headers={**HEADERS, "content-security-policy": REPORT_CSP})


ROUTES = [
    ("/evaluations", "GET", evaluations, False),
    ("/evaluations/{run_id}", "GET", evaluation, False),
    ("/evaluations/{run_id}/report", "GET", report, False),
]
