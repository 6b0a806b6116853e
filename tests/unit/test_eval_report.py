"""``llmdock eval report``: one self-contained HTML page (plots, summaries, a case browser) and its JSON,
built from results made by hand, with answers that try to inject markup."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmdock.evaluate.case import CaseResult, Output, Score
from llmdock.evaluate.report import Report, ReportRun, build, to_html, to_json

HOSTILE = "<script>alert(1)</script>"
HOSTILE_TARGET = '<img src=x onerror="alert(2)">'


def results(shift: float, targets: tuple[str, ...] = ("fake", HOSTILE_TARGET)) -> list[CaseResult]:
    """12 cases per target: an exact-match check (0/1) and a length check (characters, not 0..1)."""
    found = []
    for target in targets:
        for i in range(12):
            hit = (i + int(shift * 10)) % 3 != 0
            text = HOSTILE if i == 0 else f"answer {i} & more"
            score = Score(1.0 if hit else 0.0, hit, "" if hit else "no <b>match</b>")
            length = Score(len(text) + shift * 10, True)
            error = "backend <down>" if i == 11 else ""
            found.append(
                CaseResult(
                    target=target,
                    case_id=f"case-{i}",
                    repeat=0,
                    output=Output(text=text, latency_ms=100 + i, completion_tokens=5, error=error),
                    scores={} if error else {"exact": score, "length": length},
                    score=(1.0 if hit else 0.0) * 0.5 + 0.5,
                    passed=hit,
                    error=error,
                )
            )
    return found


def report_run(run_id: str, shift: float, targets: tuple[str, ...] = ("fake", HOSTILE_TARGET)) -> ReportRun:
    rs = results(shift, targets)
    return ReportRun(
        id=run_id,
        suite="capitals <v2>",
        status="done",
        created_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        finished_at=None,
        n_expected=len(rs),
        created_by="tester",
        results=rs,
        cases={
            (r.target, r.case_id, r.repeat): {"input": f"question {r.case_id}", "expected": "</td>x"}
            for r in rs
        },
    )


@pytest.fixture(scope="module")
def two_runs() -> Report:
    """Built once: scipy's exact Wilcoxon on small samples with ties takes a while."""
    return build([report_run("a" * 32, 0.0), report_run("b" * 32, 0.1)])


def test_the_page_loads_nothing_from_elsewhere_and_escapes_the_data(two_runs: Report) -> None:
    html = to_html(two_runs)
    assert "http://" not in html
    assert "https://" not in html
    assert not re.search(r"<(link|iframe|object|embed|img)\b", html)  # the hostile <img> is escaped
    assert not re.search(r"\ssrc\s*=", html.replace("&lt;img src=x", ""))
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert HOSTILE_TARGET not in html
    assert "&lt;/td&gt;x" in html  # an expected answer cannot close the table cell
    assert "backend &lt;down&gt;" in html
    assert html.count("<script>") == 1  # the page's own filter script, inline


def test_the_page_has_the_plots_summaries_comparison_and_case_table(two_runs: Report) -> None:
    html = to_html(two_runs)
    svgs = re.findall(r'<svg class="plot (\w+)"', html)
    # bars: pass rate, score, exact, length; distributions: score, exact, length; deltas: 0..1 + length
    assert svgs.count("bars") == 4
    assert svgs.count("strip") == 3
    assert svgs.count("forest") >= 2
    assert "Comparison: B against A" in html
    assert "McNemar exact" in html
    assert "Wilcoxon" in html
    assert "95 % CI" in html
    body = html.split('<table id="cases">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr data-verdict=") == 4 * 12  # two runs x two targets x 12 cases
    assert 'data-verdict="error"' in body
    assert 'data-verdict="fail"' in body
    assert '<select id="f-verdict">' in html
    assert 'id="f-target"' in html
    assert 'id="f-run"' in html


def test_one_run_has_no_comparison_and_no_run_column() -> None:
    report = build([report_run("c" * 32, 0.0)])
    html = to_html(report)
    assert report.comparison is None
    assert "Comparison" not in html
    assert 'id="f-run"' not in html
    assert json.loads(to_json(report))["comparison"] is None


def test_the_json_parses_and_holds_summaries_comparison_and_rows(two_runs: Report) -> None:
    data = json.loads(to_json(two_runs))
    assert [r["id"][0] for r in data["runs"]] == ["a", "b"]
    assert data["runs"][0]["targets"] == ["fake", HOSTILE_TARGET]
    summary = data["summaries"][0]["targets"][0]
    assert summary["target"] == "fake"
    assert summary["errored"] == 1
    assert 0 <= summary["pass_rate"]["low"] <= summary["pass_rate"]["mean"] <= summary["pass_rate"]["high"]
    assert set(summary["metrics"]) == {"exact", "length"}
    comparison = data["comparison"]
    assert comparison["run_a"] == "a" * 32
    assert {t["target_a"] for t in comparison["targets"]} == {"fake", HOSTILE_TARGET}
    tests = comparison["targets"][0]["tests"]
    assert tests["length"]["delta"]["mean"] == 1.0
    assert tests["length"]["test"] == "Wilcoxon"
    assert 0 <= tests["pass rate"]["p_value"] <= 1
    assert len(data["rows"]) == 48
    row = data["rows"][0]
    assert row["answer"] == HOSTILE
    assert row["expected"] == "</td>x"
    assert row["input"] == "question case-0"


def test_the_cli_writes_the_page_and_the_json_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmdock.cli.eval_report
    import llmdock.evaluate.report
    from llmdock.cli.main import app

    runs = {ref: report_run(ref * 8, shift, ("fake",)) for ref, shift in (("aaaa", 0.0), ("bbbb", 0.1))}
    monkeypatch.setattr(llmdock.cli.eval_report, "open_store", lambda config: None)
    monkeypatch.setattr(llmdock.evaluate.report, "load_run", lambda store, ref: runs[ref])
    out = tmp_path / "report.html"
    done = CliRunner().invoke(app, ["eval", "report", "aaaa", "bbbb", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert "<svg" in out.read_text()
    assert json.loads((tmp_path / "report.json").read_text())["comparison"]["run_b"] == "b" * 32
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_an_empty_run_still_renders() -> None:
    empty = ReportRun("d" * 32, "empty", "running", None, None, 3, "", [])
    report = build([empty, empty])
    assert "0 results" in to_html(report)
    assert json.loads(to_json(report))["rows"] == []
