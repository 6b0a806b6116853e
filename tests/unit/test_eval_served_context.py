"""What a target served is what metrics see: the conversation after the prompt template, the target's system
prompt and the input stages, not the bare dataset row; where it cannot be known (a URL target's server
renders the template), metrics that need it say so instead of scoring the row in the wrong context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmdock.evaluate import Case, Check, MetricError, Output
from llmdock.evaluate.local_target import LocalTarget
from llmdock.evaluate.metrics.perplexity import PerplexityMetric
from llmdock.evaluate.suite import TargetSpec
from llmdock.evaluate.targets import UrlTarget
from llmdock.prompts import PromptRegistry
from llmdock.runtime import Runtime
from llmdock.store.audit import Actor
from tests.conftest import fake_settings
from tests.upstream import Upstream

CASE = Case(
    id="paris", input="Where is Paris?", expected="France", vars={"tone": "terse"}, where="qa.jsonl:1"
)


async def test_a_local_target_records_the_rendered_template_and_system_prompt(tmp_path: Path) -> None:
    runtime = Runtime(fake_settings(tmp_path))
    assert runtime.store is not None
    prompts = PromptRegistry(runtime.store)
    template = [{"role": "system", "content": "You are a {{ tone }} guide."}]
    version, _ = prompts.create("guide", Actor("tester"), kind="chat", template=template)
    prompts.labels.set("guide", "production", version.version, Actor("tester"))
    try:
        spec = TargetSpec(model="fake", prompt="guide@production", system="Answer in French.")
        output = await LocalTarget(spec, runtime).answer(CASE, seed=0, max_tokens=8)
    finally:
        await runtime.close()
    assert output.error == ""
    assert output.messages == [
        {"role": "system", "content": "You are a terse guide."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Where is Paris?"},
    ]


async def test_a_url_target_knows_what_it_sent_unless_the_server_renders_a_template() -> None:
    upstream = Upstream("far")

    async def sent(spec: TargetSpec) -> list[dict[str, Any]] | None:
        target = UrlTarget(spec)
        try:
            output = await target.answer(CASE, seed=0, max_tokens=8)
        finally:
            await target.close()
        assert output.text == "reply from far"
        return output.messages

    try:
        plain = TargetSpec(url=upstream.url, model="m", system="Be brief.")
        assert await sent(plain) == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is Paris?"},
        ]
        assert await sent(TargetSpec(url=upstream.url, model="m", prompt="guide@production")) is None
    finally:
        upstream.stop()
    assert upstream.bodies[0]["messages"][0] == {"role": "system", "content": "Be brief."}


async def test_perplexity_refuses_an_output_whose_served_conversation_is_unknown(tmp_path: Path) -> None:
    runtime = Runtime(fake_settings(tmp_path))
    try:
        metric = PerplexityMetric(Check(type="perplexity"), runtime.stage_env)
        with pytest.raises(
            MetricError, match=r"case paris \(qa.jsonl:1\): the conversation its target served"
        ):
            await metric.score(CASE, Output(text="France", served={"model": "fake"}))
    finally:
        await runtime.close()
