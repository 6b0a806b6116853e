"""Experiments: the A/B experiments (running, stopped, concluded) and one experiment's report as
``llmdock experiments status`` gives it (``experiments.report``): per variant its share, requests, errors,
guard blocks, latency, tokens, cost and scores with their intervals; each variant against the control per
measure, with the sequential test (always-valid p, safe to look often), the fixed-horizon test beside it,
and how many more requests per variant a decision needs. Experiments are shared by every team, as for the
CLI: their figures are every team's traces that the experiment assigned."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmdock.ui.pages import Ui, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of


async def experiments(request: Request, viewer: Viewer, ui: Ui) -> Response:
    from llmdock.experiments.book import ExperimentBook

    rows = await asyncio.to_thread(ExperimentBook(store_of(ui)).rows)
    return render(request, "experiments.html", viewer, experiments=rows)


def _report(ui: Ui, name: str) -> dict[str, Any]:
    from llmdock.experiments.book import ExperimentBook
    from llmdock.experiments.report import experiment_report

    store = store_of(ui)
    row = ExperimentBook(store).get(name)
    report = experiment_report(store, row)
    return {"row": row, "report": report, "primary": report.primary()}


async def experiment(request: Request, viewer: Viewer, ui: Ui) -> Response:
    data = await asyncio.to_thread(_report, ui, request.path_params["name"])
    return render(request, "experiment.html", viewer, **data)


ROUTES: list[tuple[str, str, Any, bool]] = [
    ("/experiments", "GET", experiments, False),
    ("/experiments/{name}", "GET", experiment, False),
]
