"""Evaluation runs in the store: a run row, then one result row per case x target x repeat, written as each
case is scored. A result is stored at most once (a unique key), so ``--resume`` never duplicates one.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from llmdock.errors import InvalidRequest, NotFound
from llmdock.evaluate.case import Case, CaseResult, Output, Score
from llmdock.store.engine import Store
from llmdock.store.models import EvalResult, EvalRun

Key = tuple[str, str, int]  # target, case id, repeat


def create_run(
    store: Store,
    run_id: str,
    suite: str,
    path: str,
    sha256: str,
    config: dict[str, Any],
    n_expected: int,
    by: str,
) -> None:
    with store.session() as s, s.begin():
        s.add(
            EvalRun(
                id=run_id,
                suite=suite,
                suite_path=path,
                suite_sha256=sha256,
                config=config,
                status="running",
                n_expected=n_expected,
                created_by=by,
                created_at=datetime.now(UTC),
            )
        )


def get_run(store: Store, ref: str) -> EvalRun:
    """A run by id or unique id prefix."""
    with store.session() as s:
        rows = s.scalars(select(EvalRun).where(EvalRun.id.startswith(ref)).limit(2)).all()
    if not rows:
        raise NotFound(f"no evaluation run {ref!r} (see `llmdock eval list`)", param="run")
    if len(rows) > 1:
        raise InvalidRequest(f"{ref!r} is the start of several runs: give more of the id", param="run")
    return rows[0]


def list_runs(store: Store, limit: int = 20) -> list[tuple[EvalRun, int]]:
    """Newest runs first, each with how many good (not errored) results it holds, in one query."""
    counted = (
        select(EvalRun, func.count(EvalResult.id))
        .outerjoin(EvalResult, (EvalResult.run_id == EvalRun.id) & (EvalResult.error == ""))
        .group_by(EvalRun.id)
        .order_by(EvalRun.created_at.desc())
        .limit(limit)
    )
    with store.session() as s:
        return [(run, n) for run, n in s.execute(counted)]


def done_keys(store: Store, run_id: str) -> set[Key]:
    """The results a resume need not redo: every stored one that did not end in an error."""
    query = select(EvalResult.target, EvalResult.case_id, EvalResult.repeat).where(
        EvalResult.run_id == run_id, EvalResult.error == ""
    )
    with store.session() as s:
        return {(t, c, r) for t, c, r in s.execute(query)}


def save_result(store: Store, run_id: str, case: Case, result: CaseResult, *, resuming: bool = True) -> bool:
    """Store one result, replacing an errored one of the same key (a resume redoing it); ``False`` when a
    good result was stored already. ``resuming=False`` (a new run, which holds no errored result to replace)
    skips looking for one."""
    out = result.output
    row = EvalResult(
        run_id=run_id,
        target=result.target,
        case_id=result.case_id,
        repeat=result.repeat,
        input={"input": case.input, "messages": case.messages, "expected": case.expected, "vars": case.vars},
        output=out.text,
        error=result.error,
        scores={k: dataclasses.asdict(v) for k, v in result.scores.items()},
        score=result.score,
        passed=result.passed,
        latency_ms=out.latency_ms,
        prompt_tokens=out.prompt_tokens,
        completion_tokens=out.completion_tokens,
        cost=out.cost,
        trace_id=out.trace_id,
        served=out.served,
        created_at=datetime.now(UTC),
    )
    try:
        with store.session() as s, s.begin():
            if resuming:
                s.execute(
                    delete(EvalResult).where(
                        EvalResult.run_id == run_id,
                        EvalResult.target == result.target,
                        EvalResult.case_id == result.case_id,
                        EvalResult.repeat == result.repeat,
                        EvalResult.error != "",
                    )
                )
            s.add(row)
    except IntegrityError:
        return False
    return True


def finish_run(store: Store, run_id: str, status: str) -> None:
    with store.session() as s, s.begin():
        run = s.get(EvalRun, run_id)
        if run is not None:
            run.status = status
            run.finished_at = datetime.now(UTC) if status == "done" else None


def load_results(store: Store, run_id: str) -> list[CaseResult]:
    return [as_case_result(r) for r in result_rows(store, run_id)]


def as_case_result(row: EvalResult) -> CaseResult:
    output = Output(
        text=row.output,
        latency_ms=row.latency_ms,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost=row.cost,
        trace_id=row.trace_id,
        error=row.error,
        served=row.served,
    )
    scores = {k: Score(v["value"], v["passed"], v.get("reason", "")) for k, v in row.scores.items()}
    return CaseResult(row.target, row.case_id, row.repeat, output, scores, row.score, row.passed, row.error)


def result_rows(store: Store, run_id: str) -> list[EvalResult]:
    """The stored rows themselves (for export and the case browser)."""
    with store.session() as s:
        rows = s.scalars(select(EvalResult).where(EvalResult.run_id == run_id).order_by(EvalResult.id)).all()
        s.expunge_all()
        return list(rows)
