"""The real embedded model (SmolLM2 via llama.cpp) as the judge of a suite run: its verdict is well-formed JSON
by construction (the verdict schema's grammar constrains its decoding), and a re-run is answered from the
judge cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmdock.backends.base import Generation, GenerationRequest
from llmdock.config import Settings
from llmdock.evaluate.metrics.judge_prompt import BUILTIN_VERSION
from llmdock.evaluate.results import load_results
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import load_suite
from llmdock.routing.router import ModelRoute
from llmdock.runtime import Runtime

pytestmark = pytest.mark.model


async def test_the_embedded_model_judges_a_suite_with_a_well_formed_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [
        {"id": "france", "input": "What is the capital of France? Answer in one word.", "expected": "Paris"}
    ]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        "name: judged\ndataset: cases.jsonl\ntargets:\n  - model: smollm2\n    params: {temperature: 0}\n"
        "assert:\n  - type: llm-rubric\n    value: {rubric: 'The answer names the city Paris.', model: smollm2}\n"
        "    threshold: 0\nmax_tokens: 16\n"
    )
    runtime = Runtime(Settings(home=tmp_path / "home"))
    asked: list[GenerationRequest] = []
    original = ModelRoute.generate

    async def generate(self: ModelRoute, req: GenerationRequest) -> Generation:
        asked.append(req)
        return await original(self, req)

    monkeypatch.setattr(ModelRoute, "generate", generate)
    try:
        assert runtime.store is not None
        suite = load_suite(suite_file)
        first = await run(suite, runtime.store, runtime.plugins.metrics, runtime, show_progress=False)
        judged = [r for r in asked if r.grammar is not None]
        assert len(judged) == 1  # the judge's call, constrained by the verdict's grammar
        (result,) = load_results(runtime.store, first.run_id)
        assert not result.error, result.error
        verdict = result.scores["llm-rubric"]
        assert 0.0 <= verdict.value <= 1.0
        assert "not a verdict" not in verdict.reason, verdict.reason  # parsed and valid, not garbage
        assert verdict.reason.endswith(f"[judge smollm2, judge prompt {BUILTIN_VERSION}]")
        # run again: the target answers the same (temperature 0) and the judge is not asked twice
        again = await run(suite, runtime.store, runtime.plugins.metrics, runtime, show_progress=False)
        assert len([r for r in asked if r.grammar is not None]) == 1
        (rerun,) = load_results(runtime.store, again.run_id)
        assert rerun.scores["llm-rubric"] == verdict
    finally:
        await runtime.close()
