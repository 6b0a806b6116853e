"""Monitoring: requests, errors, guard blocks, latency (mean and slowest) and cost per hour over the last day
or week, of the viewer's team's traces (``monitor_hours``), drawn by uPlot (``static/app.js``); the alert
firings the alert loop kept (``llmdock.monitor.alerts``, newest first: per model, every team's traffic); the
drift references stored (``llmdock monitor reference set``) that ``llmdock monitor drift`` compares with; and
drift per day (``drift_chart``: one model's kept daily points, ``?drift=MODEL``, the first by name when none)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from llmdock.feedback import Scope
from llmdock.store.engine import Store
from llmdock.store.monitor_eval_rows import DriftReference
from llmdock.store.monitor_rows import AlertFiring, list_firings
from llmdock.store.ui_rows import UiDriftDay
from llmdock.ui.drift_chart import drift_models, drift_points
from llmdock.ui.monitor_hours import hourly
from llmdock.ui.pages import Ui, chosen_period, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

PERIODS = {"24h": 24, "7d": 24 * 7}
ALERTS_SHOWN = 50


def _alerts_and_references(ui: Ui) -> tuple[list[AlertFiring], list[DriftReference]]:
    store = store_of(ui)
    with store.session() as s:
        references = list(s.scalars(select(DriftReference).order_by(DriftReference.model)))
    return list_firings(store, limit=ALERTS_SHOWN), references


def _drift(store: Store, scope: Scope, asked: str) -> tuple[list[str], str, list[UiDriftDay]]:
    """The models with drift points the scope may see, the one charted, and its points that drifted."""
    models = drift_models(store, scope)
    model = asked or (models[0] if models else "")
    drifted = [p for p in drift_points(store, scope, model) if p.drifted] if model else []
    return models, model, drifted


async def monitoring(request: Request, viewer: Viewer, ui: Ui) -> Response:
    hours_back, shown = chosen_period(request, PERIODS)
    data = await asyncio.to_thread(hourly, store_of(ui), viewer.scope, hours_back)
    alerts, references = await asyncio.to_thread(_alerts_and_references, ui)
    drift = await asyncio.to_thread(_drift, store_of(ui), viewer.scope, request.query_params.get("drift", ""))
    totals = {
        "requests": int(sum(data["requests"])),
        "errors": int(sum(data["errors"])),
        "blocked": int(sum(data["blocked"])),
        "cost": sum(data["cost"]),
    }
    hours = [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:00") for t in data["t"]]
    return render(
        request,
        "monitoring.html",
        viewer,
        **shown,
        data=data,
        totals=totals,
        hours=hours,
        alerts=alerts,
        references=references,
        drift_models=drift[0],
        drift_model=drift[1],
        drifted=drift[2],
    )


ROUTES = [("/monitoring", "GET", monitoring, False)]
