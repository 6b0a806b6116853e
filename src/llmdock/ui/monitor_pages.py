"""Monitoring: requests, errors, latency (mean and slowest) and cost per hour over the last day or week,
aggregated in SQL over the viewer's team's traces and drawn by uPlot (``static/app.js``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from starlette.requests import Request
from starlette.responses import Response

from llmdock.errors import InvalidRequest
from llmdock.feedback import Scope
from llmdock.store.engine import Store
from llmdock.store.models import Trace
from llmdock.ui.pages import Ui, render
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

PERIODS = {"24h": 24, "7d": 24 * 7}


def _hour(store: Store) -> Any:
    if store.engine.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Trace.created_at), "YYYY-MM-DD HH24")
    return func.substr(Trace.created_at, 1, 13)  # SQLite keeps UTC text: "YYYY-MM-DD HH"


def hourly(store: Store, scope: Scope, hours: int) -> dict[str, list[float]]:
    """Columns for the charts, one value per hour with traffic: unix time, requests, errors, mean and max
    latency (ms), cost."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    hour = _hour(store).label("hour")
    q = (
        select(
            hour,
            func.count(),
            func.sum(case((Trace.status == "error", 1), else_=0)),
            func.avg(Trace.duration_ms),
            func.max(Trace.duration_ms),
            func.sum(Trace.cost),
        )
        .where(Trace.created_at >= since)
        .group_by(hour)
        .order_by(hour)
    )
    if scope.team is not None:
        q = q.where(Trace.team_id == scope.team)
    cols: dict[str, list[float]] = {k: [] for k in ("t", "requests", "errors", "mean_ms", "max_ms", "cost")}
    with store.session() as s:
        for h, n, errors, mean, slowest, cost in s.execute(q):
            at = datetime.strptime(str(h), "%Y-%m-%d %H").replace(tzinfo=UTC)
            values: tuple[Any, ...] = (at.timestamp(), n, errors, mean, slowest, cost)
            for key, value in zip(cols, values, strict=True):
                cols[key].append(round(float(value or 0), 6))
    return cols


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
