"""``batch.concurrency``: the gateway's Batch API runner sends that many rows through the pipeline at once,
no more; a bad value is a configuration error naming the field."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from llmdock.config import Settings
from llmdock.gateway import batches
from llmdock.gateway.batch_rows import PipelineRows
from llmdock.jobs.batch import RowAnswer
from tests.conftest import Gateway
from tests.integration.test_batch_api import batch_file, create, upload, wait_done


@pytest.mark.parametrize("concurrency", [2, 5])
async def test_the_runner_keeps_batch_concurrency_rows_in_flight(
    concurrency: int,
    gateway_factory: Callable[[Settings], Any],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer = PipelineRows.answer
    flight = {"now": 0, "most": 0}

    async def slow_answer(self: PipelineRows, url: str, body: dict[str, Any]) -> RowAnswer:
        flight["now"] += 1
        flight["most"] = max(flight["most"], flight["now"])
        try:
            await asyncio.sleep(0.05)  # long enough that the runner fills every slot it has
            return await answer(self, url, body)
        finally:
            flight["now"] -= 1

    monkeypatch.setattr(PipelineRows, "answer", slow_answer)
    gw: Gateway = await gateway_factory(make_settings(batch={"concurrency": concurrency}))
    worker = batches.start_worker(gw.runtime)  # the app's lifespan starts it; the test client has none
    assert worker is not None
    try:
        created = await create(gw, (await upload(gw, batch_file(16)))["id"])
        done = await wait_done(gw, created["id"])
    finally:
        worker.cancel()
    assert done["status"] == "completed"
    assert done["request_counts"]["total"] == 16
    assert flight["most"] == concurrency


def test_a_batch_concurrency_below_one_is_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(Exception, match="concurrency"):
        make_settings(batch={"concurrency": 0})
