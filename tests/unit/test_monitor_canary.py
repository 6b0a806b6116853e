"""Provider canaries, the comparison and the firing: a run like its baseline finds nothing; changed answers,
scores, latency, tokens and fingerprints are each named; a firing is notified once per kind of change and
resolved by a clean run; an interval becomes a cron expression or is refused."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmdock.errors import NotFound
from llmdock.evaluate.case import CaseResult, Output, Score
from llmdock.monitor.canary import every_cron, get_canary
from llmdock.monitor.canary_alert import claim_baseline, list_firings, record_run
from llmdock.monitor.canary_check import Thresholds, Verdict, check
from llmdock.store import Store
from llmdock.store.canary_rows import Canary

TH = Thresholds()


def results(
    texts: list[str],
    *,
    passed: list[bool] | None = None,
    ms: float = 100.0,
    prompt_tokens: int = 10,
    fingerprint: str = "fp_a",
) -> list[CaseResult]:
    out = []
    for i, text in enumerate(texts):
        ok = passed[i] if passed else True
        served = {"model": "hosted", "llmdock.served_system_fingerprint": fingerprint} if fingerprint else {}
        output = Output(text, ms + i, prompt_tokens, 5, served=served)
        out.append(CaseResult("hosted", str(i), 0, output, {"contains": Score(float(ok), ok)}, float(ok), ok))
    return out


TEXTS = [f"answer {i}" for i in range(8)]


def kinds(verdict: Verdict) -> list[str]:
    return [f.kind for f in verdict.findings]


def test_a_run_equal_to_its_baseline_finds_nothing() -> None:
    verdict = check(results(TEXTS), results(TEXTS), TH)
    assert verdict.unchanged == 1.0
    assert verdict.paired == 8
    assert verdict.findings == []


def test_changed_answers_and_verdicts_are_named_with_their_test() -> None:
    new = [f"other {i}" for i in range(8)]
    verdict = check(results(TEXTS), results(new, passed=[False] * 8), TH)
    assert verdict.unchanged == 0.0
    assert kinds(verdict) == ["answers", "score", "score", "score"]  # pass rate, score, the check
    assert "0 of 8 answers unchanged" in verdict.findings[0].message
    assert "'answer 0' -> 'other 0'" in verdict.findings[0].message
    assert "McNemar exact p 0.0078" in verdict.findings[1].message


def test_one_changed_answer_in_eight_stays_under_the_default_share() -> None:
    verdict = check(results(TEXTS), results([*TEXTS[:7], "something else"]), TH)
    assert verdict.unchanged == pytest.approx(7 / 8)
    assert kinds(verdict) == ["answers"]  # 87.5 % is below the default 90 %
    assert check(results(TEXTS), results([*TEXTS[:7], "x"]), Thresholds(min_unchanged=0.8)).findings == []


def test_latency_tokens_and_the_fingerprint_are_compared() -> None:
    base = results(TEXTS, ms=1000.0)
    verdict = check(base, results(TEXTS, ms=3000.0, prompt_tokens=14, fingerprint="fp_b"), TH)
    assert kinds(verdict) == ["latency", "tokens", "served"]
    assert "1004 ms -> 3004 ms (2.99x)" in verdict.findings[0].message
    assert "mean prompt tokens 10.0 -> 14.0 (+40%)" in verdict.findings[1].message
    assert verdict.findings[2].message == "system_fingerprint fp_a -> fp_b"
    assert check(base, results(TEXTS, ms=1500.0, prompt_tokens=11), TH).findings == []
    # three times slower, but by 200 ms: a loaded client, not another model
    assert check(results(TEXTS), results(TEXTS, ms=300.0), TH).findings == []


def test_errors_beyond_the_baselines_are_a_finding() -> None:
    cur = results(TEXTS)
    cur[3] = CaseResult("hosted", "3", 0, Output(error="HTTP 503: busy"), {}, 0.0, False, "HTTP 503: busy")
    verdict = check(results(TEXTS), cur, TH)
    assert kinds(verdict) == ["errors"]
    assert "1 of 8 answers errored (baseline: 0); case 3: HTTP 503: busy" in verdict.findings[0].message


@pytest.mark.parametrize(
    ("every", "cron"),
    [("30s", "* * * * * */30"), ("15m", "*/15 * * * *"), ("6h", "0 */6 * * *"), ("1d", "0 0 * * *")],
)
def test_an_interval_becomes_a_cron_expression(every: str, cron: str) -> None:
    assert every_cron(every) == cron


@pytest.mark.parametrize("every", ["7h", "45s", "2d", "soon"])
def test_an_interval_that_does_not_divide_a_day_is_refused(every: str) -> None:
    with pytest.raises(ValueError, match="cron|malformed"):
        every_cron(every)


CANARY = {
    "name": "probe",
    "target": "hosted",
    "suite_path": "suite.yaml",
    "suite_sha256": "0" * 64,
    "cron": "0 */6 * * *",
    "every": "6h",
    "schedule_id": "",
    "channels": ["hook"],
    "thresholds": {},
    "baseline_run": "",
    "created_by": "test",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'canary.db'}")
    yield s
    s.close()


def test_a_firing_is_notified_once_per_kind_and_resolved_by_a_clean_run(store: Store) -> None:
    now = datetime.now(UTC)
    canary = Canary(**{**CANARY, "created_at": now})
    with store.session() as s, s.begin():
        s.add(canary)
    base = results(TEXTS)
    row, notice = record_run(store, canary, "run-base", now, None)
    assert (row.status, notice, canary.baseline_run) == ("baseline", None, "run-base")
    changed = check(base, results([f"x{i}" for i in range(8)]), TH)
    row, notice = record_run(store, canary, "run-2", now, changed)
    assert row.status == "changed"
    assert notice is not None
    assert not notice.repeat
    assert notice.rule == "canary:probe"
    assert "0 of 8 answers unchanged" in notice.message
    again = record_run(store, canary, "run-3", now, changed)[1]
    assert again is None  # the same kinds of change: deduplicated
    worse = check(base, results([f"x{i}" for i in range(8)], fingerprint="fp_b"), TH)
    notice = record_run(store, canary, "run-4", now, worse)[1]
    assert notice is not None
    assert notice.repeat
    assert "system_fingerprint fp_a -> fp_b" in notice.message
    row, notice = record_run(store, canary, "run-5", now, check(base, results(TEXTS), TH))
    assert (row.status, notice) == ("same", None)
    [firing] = list_firings(store, "probe")
    assert firing.repeats == 2
    assert firing.resolved_at is not None
    assert firing.kinds == ["answers", "served"]


def race(store: Store, name: str) -> dict[str, bool]:
    """Two first runs claiming the baseline at the same moment, from two threads: which one won."""
    barrier = threading.Barrier(2)
    won: dict[str, bool] = {}

    def first_run(run: str) -> None:
        barrier.wait()
        won[run] = claim_baseline(store, name, run)

    threads = [threading.Thread(target=first_run, args=(f"run-{c}",)) for c in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won


def test_of_two_overlapping_first_runs_exactly_one_becomes_the_baseline(db_url: str) -> None:
    """Twenty times over, on SQLite and PostgreSQL: one run wins each time, the stored baseline is the winner's,
    and a canary with a baseline is not claimed again."""
    store = Store(db_url)
    now = datetime.now(UTC)
    try:
        for i in range(20):
            name = f"race{i}"
            with store.session() as s, s.begin():
                s.add(Canary(**{**CANARY, "name": name, "created_at": now}))
            won = race(store, name)
            assert sorted(won.values()) == [False, True]
            assert get_canary(store, name).baseline_run == next(r for r, w in won.items() if w)
            assert not claim_baseline(store, name, "run-c")
    finally:
        store.close()


def test_a_canary_firing_is_listed_silenced_and_resolved_among_the_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from llmdock.cli.main import app

    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path))
    monkeypatch.setenv("LLMDOCK_CONFIG", str(tmp_path / "llmdock.yaml"))
    monkeypatch.setenv("COLUMNS", "250")
    (tmp_path / "llmdock.yaml").write_text(f"home: {tmp_path}\n")

    def alerts(*args: str) -> str:
        out = CliRunner().invoke(app, ["alerts", *args])
        assert out.exit_code == 0, out.output
        return out.output

    store = Store(f"sqlite:///{tmp_path / 'llmdock.db'}")
    now = datetime.now(UTC)
    canary = Canary(**{**CANARY, "created_at": now})
    with store.session() as s, s.begin():
        s.add(canary)
    base = results(TEXTS)
    record_run(store, canary, "run-base", now, None)
    assert "until" in alerts("silence", "canary:probe", "--for", "1h", "--reason", "provider maintenance")
    row, notice = record_run(
        store, canary, "run-2", now, check(base, results([f"x{i}" for i in range(8)]), TH)
    )
    assert row.status == "changed"
    assert notice is None  # silenced: nothing sent
    listed = alerts("list")
    line = next(x for x in listed.splitlines() if "canary:probe" in x)
    assert "hosted" in line
    assert "changed: answers" in line
    assert "silenced" in line
    assert "firing" in line
    assert "canary:probe" in alerts("list", "--rule", "canary:probe")
    assert "canary:probe" not in alerts("list", "--rule", "latency")
    record_run(store, canary, "run-3", now, check(base, results(TEXTS), TH))
    line = next(x for x in alerts("list").splitlines() if "canary:probe" in x)
    assert "firing" not in line  # resolved by the clean run: its time shown instead
    unknown = CliRunner().invoke(app, ["alerts", "silence", "canary:nope"])
    assert isinstance(unknown.exception, NotFound)  # the CLI prints it as `error: no canary 'nope' …`
    assert "no canary 'nope'" in str(unknown.exception)
    store.close()
