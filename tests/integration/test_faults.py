"""One of two deployments fails under sustained load at c=32 against a real ``llmdock serve``, then comes back.

Each scenario is bench/faults.py run for a few seconds (the bench runs a minute each): the upstream of
deployment ``b`` is killed, stopped (accepts, never answers) or answers 500s, for plain and streamed requests;
its stream may also die after the first token. No client request may fail, b's breaker must be seen open in
``/v1/deployments``, and once b is repaired its breaker closes and traffic comes back to it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.server


def run_bench(scenario: str, tmp_path: Path, seconds: float = 9.0) -> dict[str, object]:
    out = tmp_path / "faults.json"
    proc = subprocess.run(
        [
            sys.executable,
            "bench/faults.py",
            "--scenario",
            scenario,
            "--seconds",
            str(seconds),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (result,) = json.loads(out.read_text())
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("scenario", ["gone", "hang", "500", "stream-500"])
def test_a_failing_deployment_fails_no_client_request_and_gets_its_traffic_back(
    scenario: str, tmp_path: Path
) -> None:
    result = run_bench(scenario, tmp_path)
    assert result["failures"] == 0, result
    assert result["error_events"] == 0, result  # streams failed over before their first token
    assert result["served_by_b_before"], result  # b really had its share before it failed
    transitions = result["transitions"]
    assert isinstance(transitions, list)
    assert any(t.startswith("open@") for t in transitions), result
    assert result["final_state"] == "closed", result
    assert result["served_by_b_after_repair"], result


def test_streams_cut_after_their_first_token_end_with_an_error_event_never_a_hang(tmp_path: Path) -> None:
    result = run_bench("stream-cut", tmp_path)
    assert result["failures"] == 0, result  # no 5xx, no hung stream, no stream that just stops
    assert result["error_events"], result  # b's cut streams: the client was told, with an SSE error event
    assert result["error_events_after_repair"] == 0, result
    assert result["final_state"] == "closed", result
    assert result["served_by_b_after_repair"], result
