"""``llm-rubric``: a judge model's JSON verdict becomes a score with its reason; judge calls are cached by
content hash; garbage from the judge scores 0 with a reason; the judge prompt is the stored ``llmdock-judge``
template when there is one. The judge here is the ``fake`` backend, configured to reply with a verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmdock.backends.base import Generation, GenerationRequest
from llmdock.backends.fake import FakeBackend
from llmdock.config import ModelConfig
from llmdock.errors import BackendUnavailable
from llmdock.evaluate import Case, Check, MetricError, Output, Score
from llmdock.evaluate.metrics.judge import LlmRubricMetric
from llmdock.evaluate.metrics.judge_prompt import BUILTIN_VERSION
from llmdock.evaluate.results import load_results
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import load_suite
from llmdock.prompts import PromptRegistry
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from tests.conftest import fake_settings

CASE = Case(id="paris", input="What is the capital of France?", expected="Paris", where="qa.jsonl:1")
RUBRIC = "The answer names Paris as the capital of France."
GOOD = json.dumps({"reason": "It names Paris.", "score": 0.9})


def runtime_with(tmp_path: Path, judge_reply: str, **extra_models: ModelConfig) -> Runtime:
    models = {
        "fake": ModelConfig(backend="fake"),
        "judge": ModelConfig(backend="fake", reply=judge_reply),
        **extra_models,
    }
    return Runtime(fake_settings(tmp_path / "home", models=models))


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[GenerationRequest]]:
    """Every request a fake backend generates for, in order."""
    seen: list[GenerationRequest] = []
    original = FakeBackend.generate

    async def generate(self: FakeBackend, req: GenerationRequest) -> Generation:
        seen.append(req)
        return await original(self, req)

    monkeypatch.setattr(FakeBackend, "generate", generate)
    return seen


def metric(runtime: Runtime, value: Any = None, **check: Any) -> LlmRubricMetric:
    value = {"rubric": RUBRIC, "model": "judge"} if value is None else value
    return LlmRubricMetric(Check(type="llm-rubric", value=value, **check), runtime.stage_env)


async def test_the_judges_score_and_reason_become_the_checks(
    tmp_path: Path, asked: list[GenerationRequest]
) -> None:
    runtime = runtime_with(tmp_path, GOOD)
    score = await metric(runtime).score(CASE, Output("Paris."))
    assert score == Score(0.9, True, f"It names Paris. [judge judge, judge prompt {BUILTIN_VERSION}]")
    (req,) = asked
    assert req.params.temperature == 0
    system, user = req.messages or []
    assert "Evaluation steps" in system["content"]
    assert '"score"' in system["content"]  # the reply instructions for the verdict's form
    assert f"Rubric: {RUBRIC}" in user["content"]
    assert "Reference answer: Paris" in user["content"]
    assert user["content"].endswith("Answer to grade: Paris.")
    # under the threshold it fails
    assert not (await metric(runtime, threshold=0.95).score(CASE, Output("Paris."))).passed


async def test_a_pass_fail_verdict_scores_one_or_zero(tmp_path: Path) -> None:
    runtime = runtime_with(tmp_path, json.dumps({"reason": "It says Lyon.", "pass": False}))
    value = {"rubric": RUBRIC, "provider": "judge", "verdict": "pass"}
    score = await metric(runtime, value).score(CASE, Output("Lyon."))
    assert (score.value, score.passed) == (0.0, False)
    assert score.reason.startswith("It says Lyon.")


async def test_the_default_judge_is_the_default_model(tmp_path: Path) -> None:
    runtime = Runtime(
        fake_settings(tmp_path / "home", models={"fake": ModelConfig(backend="fake", reply=GOOD)})
    )
    score = await metric(runtime, RUBRIC).score(CASE, Output("Paris."))
    assert score.value == pytest.approx(0.9)
    assert "[judge fake," in score.reason


async def test_a_second_identical_call_is_answered_from_the_cache(
    tmp_path: Path, asked: list[GenerationRequest]
) -> None:
    runtime = runtime_with(tmp_path, GOOD)
    first = await metric(runtime).score(CASE, Output("Paris."))
    again = await metric(runtime).score(CASE, Output("Paris."))  # a new metric: as a re-run builds one
    assert again == first
    assert len(asked) == 1  # the backend was not asked again
    assert (tmp_path / "home" / "judge-cache" / "judge.sqlite").exists()
    await metric(runtime).score(CASE, Output("It is Paris."))  # another answer is another call
    assert len(asked) == 2
    uncached = {"rubric": RUBRIC, "model": "judge", "cache": False}
    await metric(runtime, uncached).score(CASE, Output("Paris."))
    assert len(asked) == 3


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("I think the answer is quite good!", "not valid JSON"),
        (json.dumps({"reason": "Great.", "score": 7}), "7 is greater than the maximum of 1"),
        (json.dumps({"score": 0.8}), "'reason' is a required property"),
        ("", "not valid JSON"),
    ],
)
async def test_garbage_from_the_judge_scores_zero_with_a_reason(
    tmp_path: Path, reply: str, error: str
) -> None:
    runtime = runtime_with(tmp_path, reply)
    score = await metric(runtime).score(CASE, Output("Paris."))
    assert (score.value, score.passed) == (0.0, False)
    assert score.reason.startswith("the judge's answer is not a verdict")
    assert error in score.reason
    assert f"judge prompt {BUILTIN_VERSION}" in score.reason


async def test_a_near_miss_is_repaired_as_the_structured_stage_repairs_it(tmp_path: Path) -> None:
    runtime = runtime_with(tmp_path, '{"reason": "It names Paris.", "score": 0.75')
    assert (await metric(runtime).score(CASE, Output("Paris."))).value == pytest.approx(0.75)


async def test_a_stored_llmdock_judge_template_is_used_and_named(
    tmp_path: Path, asked: list[GenerationRequest]
) -> None:
    runtime = runtime_with(tmp_path, GOOD, grader=ModelConfig(backend="fake", reply=GOOD))
    assert runtime.store is not None
    template = [
        {"role": "system", "content": "Grade strictly."},
        {"role": "user", "content": "Rubric: {{ rubric }}\nAnswer: {{ output }}"},
    ]
    PromptRegistry(runtime.store).create(
        "llmdock-judge", Actor("test"), kind="chat", template=template, config={"model": "grader"}
    )
    score = await metric(runtime, RUBRIC).score(CASE, Output("Paris."))
    assert score.reason == "It names Paris. [judge grader, judge prompt llmdock-judge v1]"
    system, user = asked[0].messages or []
    # a template that does not place the reply instructions gets them after its system text
    assert system["content"].startswith("Grade strictly.\n\nReply with only a JSON object")
    assert user["content"] == f"Rubric: {RUBRIC}\nAnswer: Paris."
    # a check naming its model still wins over the template's
    assert "[judge judge," in (await metric(runtime).score(CASE, Output("Paris."))).reason


async def test_the_verdict_is_asked_for_as_the_backend_can_enforce_it(
    tmp_path: Path, asked: list[GenerationRequest], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_with(tmp_path, GOOD)
    await metric(runtime).score(CASE, Output("prompt only"))
    assert asked[-1].grammar is None
    assert "response_format" not in asked[-1].extra
    monkeypatch.setattr(FakeBackend, "enforces_grammar", True)  # as the embedded llama.cpp model
    await metric(runtime).score(CASE, Output("by grammar"))
    assert asked[-1].grammar is not None
    assert '"\\"score\\""' in asked[-1].grammar  # the verdict's keys, in the GBNF
    monkeypatch.setattr(FakeBackend, "native_structured_output", True)  # as an OpenAI-compatible upstream
    await metric(runtime).score(CASE, Output("natively"))
    fmt = asked[-1].extra["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"]["required"] == ["reason", "score"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"rubric": RUBRIC, "model": "nope"}, "judge model: The model 'nope' does not exist"),
        ({"rubric": ""}, "value.rubric: String should have at least 1 character"),
        ({"rubric": RUBRIC, "verdict": "stars"}, "value.verdict: Input should be 'score' or 'pass'"),
        ({"rubric": RUBRIC, "prompt": "my-judge"}, "judge prompt: .*my-judge"),
        (3, "`value` is the rubric"),
    ],
)
def test_a_bad_check_is_refused_when_the_suite_is_built(tmp_path: Path, value: Any, message: str) -> None:
    runtime = runtime_with(tmp_path, GOOD)
    with pytest.raises(MetricError, match=message):
        metric(runtime, value)


def test_the_judge_needs_a_local_runtime() -> None:
    with pytest.raises(MetricError, match="needs the local runtime"):
        LlmRubricMetric(Check(type="llm-rubric", value=RUBRIC), None)


async def test_a_failing_judge_is_a_metric_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(self: FakeBackend, req: GenerationRequest) -> Generation:
        raise BackendUnavailable("connection refused")

    monkeypatch.setattr(FakeBackend, "generate", down)
    runtime = runtime_with(tmp_path, GOOD)
    with pytest.raises(MetricError, match=r"the judge \(judge\) failed: connection refused"):
        await metric(runtime).score(CASE, Output("Paris."))


async def test_a_suite_is_judged_and_the_verdicts_stored(tmp_path: Path) -> None:
    (tmp_path / "cases.jsonl").write_text(json.dumps({"id": "paris", "input": "Capital of France?"}) + "\n")
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        "name: judged\ndataset: cases.jsonl\ntargets:\n  - model: fake\nassert:\n"
        f"  - type: llm-rubric\n    value: {{rubric: '{RUBRIC}', model: judge}}\n"
    )
    runtime = runtime_with(tmp_path, GOOD)
    assert runtime.store is not None
    suite = load_suite(suite_file)
    outcome = await run(suite, runtime.store, runtime.plugins.metrics, runtime, show_progress=False)
    (result,) = load_results(runtime.store, outcome.run_id)
    assert result.passed
    assert result.scores["llm-rubric"].value == pytest.approx(0.9)
    assert result.scores["llm-rubric"].reason.startswith("It names Paris.")
