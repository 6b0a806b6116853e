"""``llmdock eval report`` opened in a real browser: two runs of a suite on the fake backend, reported by the
CLI, then loaded in headless Chromium (Debian's ``chromium``) with the network cut off. The page's script
must run, the plots and the case table must be in the DOM, a filter read from the URL must hide exactly
the rows it should, and an answer carrying a ``<script>`` must stay text."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import run_cli
from tests.integration.test_eval_cli import FAKE_CONFIG

pytestmark = pytest.mark.browser

HOSTILE = "<script>alert(1)</script>"
ROWS = [
    {"id": "italy", "input": "capital of italy", "expected": "italy"},
    {"id": "france", "input": "capital of france", "expected": "france"},
    {"id": "spain", "input": "capital of spain", "expected": "madrid"},
    {"id": "peru", "input": "capital of peru", "expected": "lima"},
    {"id": "chile", "input": "capital of chile", "expected": "chile"},
    {"id": "hostile", "input": HOSTILE, "expected": "alert"},
]
CHECKS = "  - type: icontains\n  - type: rouge-l\n    threshold: 0\n  - type: latency\n"


def chromium_or_skip() -> str:
    found = shutil.which("chromium")
    if found is None:
        reason = "chromium is not installed (Debian package chromium; scripts/system-deps.sh installs it)"
        if os.environ.get("LLMDOCK_REQUIRE_SERVICES") == "1":
            pytest.fail(f"LLMDOCK_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def browse(chromium: str, profile: Path, url: str, *args: str) -> str:
    """Load ``url`` in headless Chromium with every network request failing; its stdout (``--dump-dom``)."""
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--proxy-server=127.0.0.1:9",  # nothing listens: a page that fetched anything would break
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1400,3000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def run_suite(home: Path, name: str, rows: list[dict[str, str]]) -> str:
    folder = home / name
    folder.mkdir()
    (folder / "cases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "suite.yaml").write_text(
        f"name: capitals\ndataset: cases.jsonl\ntargets:\n  - model: fake\nassert:\n{CHECKS}"
    )
    done = run_cli(home, "eval", "run", str(folder / "suite.yaml"))
    assert done.returncode == 0, done.stderr
    return done.stderr.split("run ", 1)[1].split(":", 1)[0]


def case_rows(dom: str) -> list[tuple[str, str, bool]]:
    """The case table's rows as (run, verdict, hidden)."""
    body = dom.split('<table id="cases">', 1)[1].split("</table>", 1)[0]
    found = []
    for attrs in re.findall(r"<tr ([^>]*)>", body):
        verdict = re.search(r'data-verdict="(\w+)"', attrs)
        run = re.search(r'data-run="(\w*)"', attrs)
        assert verdict, attrs
        assert run, attrs
        found.append((run.group(1), verdict.group(1), re.search(r"\bhidden\b", attrs) is not None))
    return found


def test_the_report_renders_in_chromium_and_its_filters_work(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    (tmp_path / "llmdock.yaml").write_text(FAKE_CONFIG)
    run_a = run_suite(tmp_path, "a", ROWS)
    changed = {"spain": "capital", "italy": "rome"}  # B: spain now passes, italy fails
    run_b = run_suite(tmp_path, "b", [{**r, "expected": changed.get(r["id"], r["expected"])} for r in ROWS])
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    done = run_cli(tmp_path, "eval", "report", run_a[:10], run_b[:10], "-o", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["id"] for r in data["runs"]] == [run_a, run_b]
    profile = tmp_path / "profile"

    dom = browse(chromium, profile, out.as_uri(), "--dump-dom")
    assert 'data-ready="1"' in dom  # the page's script ran to the end
    assert len(re.findall(r'<svg class="plot bars"', dom)) == 5  # pass rate, score and the three checks
    assert len(re.findall(r'<svg class="plot strip"', dom)) == 4
    assert len(re.findall(r'<svg class="plot forest"', dom)) >= 2  # 0..1 measures, latency on its own
    assert dom.count("<rect") >= 10
    assert dom.count("<circle") >= 10
    rows = case_rows(dom)
    assert len(rows) == 12  # 6 cases x 2 runs
    assert not any(hidden for _, _, hidden in rows)
    assert "12 of 12 results" in dom
    assert dom.count("<script") == 1  # the hostile answer stayed text
    assert "fake answer to: &lt;script&gt;alert(1)&lt;/script&gt;" in dom

    failed = case_rows(browse(chromium, profile, out.as_uri() + "#verdict=fail", "--dump-dom"))
    shown = sorted((run, verdict) for run, verdict, hidden in failed if not hidden)
    assert shown == [("A", "fail"), ("A", "fail"), ("B", "fail"), ("B", "fail")]  # spain+peru, italy+peru
    assert len(failed) == 12

    searched = browse(chromium, profile, out.as_uri() + "#q=SPAIN&run=B", "--dump-dom")
    assert [(r, v) for r, v, hidden in case_rows(searched) if not hidden] == [("B", "pass")]
    assert "1 of 12 results" in searched

    shot = tmp_path / "report.png"
    browse(chromium, profile, out.as_uri(), f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a page of tables and plots, not a blank one
