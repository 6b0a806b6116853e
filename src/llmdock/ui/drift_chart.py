"""The monitoring page's drift chart: the daily drift points the ``monitor.drift_days`` step keeps
(``ui_drift_days``: per model, UTC day and statistic, the test's p-value adjusted over the day's tests), as
JSON for uPlot (``/ui/monitoring/drift.json?model=M&days=N``, drawn by ``static/app.js``: one line per
statistic, log scale, the drift threshold beside them) and as a table of the points that drifted.

Drift compares every team's traffic of a model. A viewer of one team sees the points of the models that
team's traces used in the charted days (its hourly totals, ``monitor_hours``), and a 404 for any other
model, as for a trace of another team."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from llmdock.errors import InvalidRequest, NotFound
from llmdock.feedback import Scope
from llmdock.store.engine import Store
from llmdock.store.ui_rows import UiDriftDay
from llmdock.ui.monitor_hours import totals_by
from llmdock.ui.pages import HEADERS, Ui
from llmdock.ui.session import Viewer
from llmdock.ui.trace_pages import store_of

DAYS = 30  # charted by default
MAX_DAYS = 90
ALPHA = 0.05  # the step's default threshold, drawn as a line


def _first_day(days: int) -> str:
    return datetime.fromtimestamp(datetime.now(UTC).timestamp() - days * 86400, UTC).strftime("%Y-%m-%d")


def drift_models(store: Store, scope: Scope, days: int = DAYS) -> list[str]:
    """The models with points in the last ``days`` days that ``scope`` may see."""
    q = select(UiDriftDay.model).distinct().where(UiDriftDay.day >= _first_day(days))
    with store.session() as s:
        models = set(s.scalars(q))
    if models and scope.team is not None:  # the team's hourly totals only when there is something to scope
        models &= set(totals_by(store, scope, days * 24, ("model",))["model"])
    return sorted(models)


def drift_points(store: Store, scope: Scope, model: str, days: int = DAYS) -> list[UiDriftDay]:
    """The model's points of the last ``days`` days, by day and statistic; NotFound if ``scope`` may not see
    it (or it has none)."""
    if model not in drift_models(store, scope, days):
        raise NotFound(f"no drift points of model {model!r} in the last {days} days", param="model")
    q = (
        select(UiDriftDay)
        .where(UiDriftDay.model == model, UiDriftDay.day >= _first_day(days))
        .order_by(UiDriftDay.day, UiDriftDay.statistic)
    )
    with store.session() as s:
        return list(s.scalars(q))


def series(points: list[UiDriftDay]) -> dict[str, Any]:
    """uPlot's columns: the days (unix time, UTC midnight) and per statistic its adjusted p-value per day
    (null where the day has no such point), with the raw p-values and statistics beside them."""
    days = sorted({p.day for p in points})
    at = {d: i for i, d in enumerate(days)}
    out: dict[str, dict[str, Any]] = {}
    for p in points:
        s = out.setdefault(
            p.statistic,
            {"statistic": p.statistic, "test": p.test, **{k: [None] * len(days) for k in _COLUMNS}},
        )
        i = at[p.day]
        s["adjusted_p"][i], s["p_value"][i], s["value"][i] = p.adjusted_p, p.p_value, p.value
        s["drifted"][i] = p.drifted
    t = [datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=UTC).timestamp() for d in days]
    return {"days": days, "t": t, "alpha": ALPHA, "series": list(out.values())}


_COLUMNS = ("adjusted_p", "p_value", "value", "drifted")


def chosen_days(request: Request) -> int:
    raw = request.query_params.get("days", str(DAYS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise InvalidRequest(f"days: a whole number from 1 to {MAX_DAYS}, not {raw[:20]!r}", param="days")
    return int(raw)


async def drift_json(request: Request, viewer: Viewer, ui: Ui) -> Response:
    days = chosen_days(request)
    model = request.query_params.get("model", "")
    points = await asyncio.to_thread(drift_points, store_of(ui), viewer.scope, model, days)
    data = {"model": model, **series(points)}
    return JSONResponse(data, headers=HEADERS)


ROUTES = [("/monitoring/drift.json", "GET", drift_json, False)]
