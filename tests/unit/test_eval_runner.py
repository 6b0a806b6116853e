"""Suites through the served pipeline: results stored as they finish, resumed without duplicates, and bad
input named by file and line (the fake backend answers "fake answer to: <question>")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from llmdock.errors import BackendUnavailable, ConfigError, InvalidRequest
from llmdock.evaluate.case import BaseMetric, Case, Output, Score
from llmdock.evaluate.results import done_keys, get_run, load_results, result_rows
from llmdock.evaluate.runner import run
from llmdock.evaluate.suite import load_suite
from llmdock.runtime import Runtime
from llmdock.store.models import EvalResult
from tests.conftest import fake_settings


class Contains(BaseMetric):
    """A stand-in for the built-in `icontains` metric (the metric plugins have their own tests)."""

    name: ClassVar[str] = "has"
    needs_reference: ClassVar[bool] = True

    async def score(self, case: Case, output: Output) -> Score:
        hit = (self.check.value or self.reference(case)).lower() in output.text.lower()
        return Score(1.0 if hit else 0.0, hit)


class Length(BaseMetric):
    name: ClassVar[str] = "length"

    async def score(self, case: Case, output: Output) -> Score:
        return Score(len(output.text), len(output.text) <= (self.check.threshold or 1e9))


METRICS: dict[str, Any] = {"has": Contains, "length": Length}
ROWS = [
    {"id": "italy", "input": "capital of italy", "expected": "italy"},
    {"id": "france", "input": "capital of france", "expected": "FRANCE"},
    {"id": "spain", "input": "capital of spain", "expected": "madrid"},
]


def write_suite(tmp_path: Path, rows: list[Any] | None = None, extra: str = "", checks: str = "") -> Path:
    data = tmp_path / "cases.jsonl"
    data.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows or ROWS))
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: capitals\n"
        "dataset: cases.jsonl\n"
        "targets:\n"
        "  - model: fake\n"
        "assert:\n" + (checks or "  - type: has\n  - type: length\n    threshold: 100\n") + extra
    )
    return suite


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return Runtime(fake_settings(tmp_path / "home"))


async def test_every_case_is_answered_scored_and_stored(tmp_path: Path, runtime: Runtime) -> None:
    suite = load_suite(write_suite(tmp_path, extra="repeats: 2\n"))
    assert runtime.store is not None
    outcome = await run(suite, runtime.store, METRICS, runtime, show_progress=False)
    stored = load_results(runtime.store, outcome.run_id)
    assert len(stored) == 6  # 3 cases x 1 target x 2 repeats
    by_case = {(r.case_id, r.repeat): r for r in stored}
    assert by_case[("italy", 0)].passed
    assert by_case[("spain", 1)].scores["has"] == Score(0.0, False, "")
    assert by_case[("spain", 1)].score == pytest.approx(0.5)  # one of two equally weighted checks
    assert by_case[("italy", 0)].output.text == "fake answer to: capital of italy"
    assert get_run(runtime.store, outcome.run_id[:8]).status == "done"
    # each answer went through the served pipeline and left a trace
    assert all(r.output.trace_id for r in stored)
    await runtime.close()


async def test_a_resumed_run_asks_only_what_is_missing(tmp_path: Path, runtime: Runtime) -> None:
    suite = load_suite(write_suite(tmp_path))
    store = runtime.store
    assert store is not None
    first = await run(suite, store, METRICS, runtime, show_progress=False)
    with store.session() as s, s.begin():  # as if the process died before the last two were stored
        for row in s.query(EvalResult).filter(EvalResult.case_id != "italy"):
            s.delete(row)
    assert done_keys(store, first.run_id) == {("fake", "italy", 0)}
    again = await run(suite, store, METRICS, runtime, resume=first.run_id, show_progress=False)
    assert again.already_done == 1
    assert sorted(r.case_id for r in again.results) == ["france", "spain"]
    assert len(result_rows(store, first.run_id)) == 3  # nothing lost, nothing twice
    await runtime.close()


async def test_resume_refuses_a_changed_suite(tmp_path: Path, runtime: Runtime) -> None:
    assert runtime.store is not None
    first = await run(load_suite(write_suite(tmp_path)), runtime.store, METRICS, runtime, show_progress=False)
    changed = load_suite(
        write_suite(tmp_path, rows=[*ROWS, {"input": "capital of peru", "expected": "lima"}])
    )
    with pytest.raises(InvalidRequest, match="another version"):
        await run(changed, runtime.store, METRICS, runtime, resume=first.run_id, show_progress=False)
    await runtime.close()


def test_a_malformed_dataset_line_is_named_by_file_line_and_field(tmp_path: Path) -> None:
    rows = [ROWS[0], "{not json", {"input": 3}, {"input": "x", "answer": "y"}]
    with pytest.raises(ConfigError) as info:
        load_suite(write_suite(tmp_path, rows=rows))
    assert info.value.one_line().startswith(f"{tmp_path / 'cases.jsonl'}:2: not JSON")
    suite = load_suite(write_suite(tmp_path, rows=rows), on_error="skip")
    assert [c.id for c in suite.cases] == ["italy"]
    assert [s.split(": ", 1)[1] for s in suite.skipped] == [
        "not JSON: Expecting property name enclosed in double quotes (column 2)",
        "input: must be a string",
        "answer: unknown field (known: id, input, messages, expected, context, vars, metadata)",
    ]


async def test_an_unknown_metric_names_the_suite_line_and_the_valid_names(
    tmp_path: Path, runtime: Runtime
) -> None:
    suite = load_suite(write_suite(tmp_path, checks="  - type: has\n  - type: bleuu\n"))
    assert runtime.store is not None
    with pytest.raises(ConfigError) as info:
        await run(suite, runtime.store, METRICS, runtime, show_progress=False)
    assert (
        info.value.one_line()
        == f"{tmp_path / 'suite.yaml'}:7: assert.1: unknown metric 'bleuu' (known: has, length)"
    )
    await runtime.close()


async def test_a_reference_metric_over_a_case_without_expected_names_the_case(
    tmp_path: Path, runtime: Runtime
) -> None:
    suite = load_suite(write_suite(tmp_path, rows=[ROWS[0], {"id": "open", "input": "say hi"}]))
    assert runtime.store is not None
    with pytest.raises(ConfigError, match=r"has compares with `expected`, and case open \(.*cases.jsonl:2\)"):
        await run(suite, runtime.store, METRICS, runtime, show_progress=False)
    await runtime.close()


def test_a_bad_suite_field_is_named_by_line(tmp_path: Path) -> None:
    path = write_suite(tmp_path, extra="repeats: 0\n")
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert info.value.one_line().startswith(f"{path}:9: repeats: ")


async def test_a_failing_target_marks_the_case_errored_and_resume_redoes_it(
    tmp_path: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = load_suite(write_suite(tmp_path))
    store = runtime.store
    assert store is not None
    real, down = runtime.backend, {"now": True}

    def flaky(model: str) -> Any:
        if down["now"]:
            raise BackendUnavailable("upstream down")
        return real(model)

    monkeypatch.setattr(runtime, "backend", flaky)
    first = await run(suite, store, METRICS, runtime, show_progress=False)
    assert {r.error for r in load_results(store, first.run_id)} == {"upstream down"}
    assert not any(r.passed for r in load_results(store, first.run_id))
    assert done_keys(store, first.run_id) == set()
    down["now"] = False
    again = await run(suite, store, METRICS, runtime, resume=first.run_id, show_progress=False)
    assert len(again.results) == 3
    stored = load_results(store, first.run_id)
    assert len(stored) == 3  # the errored rows were replaced, not added to
    assert not any(r.error for r in stored)
    await runtime.close()


def test_an_unknown_sampling_parameter_is_a_suite_error_at_its_line(tmp_path: Path) -> None:
    path = write_suite(tmp_path)
    path.write_text(
        path.read_text().replace("  - model: fake\n", "  - model: fake\n    params: {bogus: 1}\n")
    )
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert info.value.one_line().startswith(f"{path}:4: targets.0: ")
    assert "unknown sampling parameter(s) ['bogus']" in info.value.one_line()
