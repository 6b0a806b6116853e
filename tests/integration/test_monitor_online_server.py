"""Online evaluation through a running ``llmdock serve``: a share of the answered traffic is scored
in the background by a judge (an OpenAI-compatible upstream answering verdicts) and VADER sentiment, each
sampled trace exactly once, and the scores appear in ``llmdock monitor scores`` and
on ``/metrics``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import yaml

from llmdock.monitor.online_rules import sampled
from tests.integration.conftest import run_cli, start_server, stop_server
from tests.upstream import Upstream

pytestmark = pytest.mark.server
VERDICT = {"content": json.dumps({"reason": "It helps.", "score": 0.8})}


def config(answers: Upstream, judge: Upstream) -> dict[str, object]:
    def deployment(up: Upstream) -> dict[str, object]:
        return {"deployments": [{"backend": "openai_compat", "base_url": up.url, "upstream_model": "m"}]}

    return {
        "include_builtin_models": False,
        "default_model": "support",
        "default_embedding_model": "",
        "models": {"support": deployment(answers), "judge": deployment(judge)},
        "metrics": {"flush_interval_s": 0.2},
        "online_eval": {
            "every": "0.5s",
            "settle": "1s",
            "rules": [
                {
                    "name": "quality",
                    "models": ["support"],
                    "sample": 0.5,
                    "metrics": [
                        {
                            "type": "llm-rubric",
                            "name": "helpful",
                            "value": {"rubric": "helps", "model": "judge"},
                        },
                        {"type": "sentiment", "name": "tone"},
                    ],
                }
            ],
        },
    }


def test_served_traffic_is_sampled_scored_once_and_listed(tmp_path: Path) -> None:
    answers, judge = Upstream("support"), Upstream("judge", mode="script", replies=[VERDICT])
    (tmp_path / "llmdock.yaml").write_text(yaml.safe_dump(config(answers, judge)))
    server = start_server(tmp_path, "--config", str(tmp_path / "llmdock.yaml"))
    try:
        ids = []
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for i in range(30):
                body = {"model": "support", "messages": [{"role": "user", "content": f"question number {i}"}]}
                resp = http.post("/v1/chat/completions", json=body)
                assert resp.status_code == 200
                ids.append(resp.headers["x-llmdock-trace-id"])
        expected = [t for t in ids if sampled("quality", t, 0.5)]
        assert 5 < len(expected) < 25
        metric = f'llmdock_online_eval_score_count{{metric="helpful",model="support"}} {len(expected)}.0'
        deadline = time.monotonic() + 60
        while metric not in httpx.get(f"{server.url}/metrics", timeout=10).text:
            assert time.monotonic() < deadline, "the sampled traces were not scored within a minute"
            time.sleep(0.5)
        time.sleep(2)  # a few more looks: nothing is scored twice
        out = run_cli(tmp_path, "monitor", "scores", "--model", "support", "--since", "1d")
        assert out.returncode == 0, out.stderr
        rows = [line for line in out.stdout.splitlines() if "helpful" in line or "tone" in line]
        assert len(rows) == 2, out.stdout
        helpful = next(r for r in rows if "helpful" in r)
        assert "0.8" in helpful, out.stdout  # the judge's verdict, every time
        assert f"│ {len(expected)} " in helpful, out.stdout  # each sampled trace once
        time.sleep(2)  # a few more looks: nothing is scored twice
        assert judge.hits == len(expected)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert (
            f'llmdock_online_eval_score_count{{metric="helpful",model="support"}} {len(expected)}.0'
            in metrics
        )
    finally:
        stop_server(server)
        answers.stop()
        judge.stop()
