"""Monitoring: requests, errors, latency (mean and slowest) and cost per hour over the last day or week,
of the viewer's team's traces (``monitor_hours``), drawn by uPlot (``static/app.js``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import InvalidRequest
from llmdock.ui.monitor_hours import hourly
from llmdock.ui.pages import Ui, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

PERIODS = {"24h": 24, "7d": 24 * 7}


async def monitoring(request: Request, viewer: Viewer, ui: Ui) -> Response:
    period = request.query_params.get("period", "24h")
    if period not in PERIODS:
        raise InvalidRequest(f"period: one of {', '.join(PERIODS)}, not {period[:20]!r}", param="period")
    data = await asyncio.to_thread(hourly, store_of(ui), viewer.scope, PERIODS[period])
    totals = {
        "requests": int(sum(data["requests"])),
        "errors": int(sum(data["errors"])),
        "cost": sum(data["cost"]),
    }
    hours = [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:00") for t in data["t"]]
    return render(
        request,
        "monitoring.html",
        viewer,
        period=period,
        periods=list(PERIODS),
        data=data,
        totals=totals,
        hours=hours,
    )


ROUTES = [("/monitoring", "GET", monitoring, False)]
