"""``GET /metrics``: the gateway's Prometheus metrics (llmdock.monitor.metrics), observe permission with auth on."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.responses import Response

from llmdock.errors import NotFound
from llmdock.gateway.deps import RuntimeDep

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    if runtime.metrics is None:
        raise NotFound("metrics are off (metrics.enabled: false)")
    from llmdock.monitor.exposition import render

    runtime.metrics.flush()  # on the loop that tallies, so no request's counts are caught half-way
    # Reading every worker's files is disk work: off the event loop
    body, content_type = await asyncio.to_thread(render, runtime.metrics)
    return Response(body, media_type=content_type)
