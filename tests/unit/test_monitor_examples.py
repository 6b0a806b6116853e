"""The example Grafana dashboard and Prometheus rules only use metrics the gateway exports, and promtool accepts
their PromQL (the dashboard's queries are checked as rules too, with Grafana's variables filled in)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from llmdock.monitor.metrics import INSTRUMENTS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "examples" / "grafana" / "llmdock.json"
RULES = ROOT / "examples" / "prometheus" / "alerts.yml"
NAME = re.compile(r"\bllmdock_[a-z_]+")


def exported(name: str) -> bool:
    """Whether ``name`` is a series /metrics serves (a histogram's _bucket, _sum and _count, a summary's _sum and _count included)."""
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in INSTRUMENTS or (base in INSTRUMENTS and INSTRUMENTS[base][0] in ("histogram", "summary"))


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def rule_queries() -> list[str]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is missing (Debian package prometheus; scripts/system-deps.sh installs it)"
        if os.environ.get("LLMDOCK_REQUIRE_SERVICES") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


@pytest.mark.parametrize("queries", [dashboard_queries, rule_queries], ids=["dashboard", "rules"])
def test_every_query_names_only_exported_metrics(queries: object) -> None:
    exprs = queries()  # type: ignore[operator]
    assert exprs
    for expr in exprs:
        names = NAME.findall(expr)
        assert names, expr
        assert all(exported(n) for n in names), (expr, [n for n in names if not exported(n)])


def test_the_dashboard_shows_every_exported_metric() -> None:
    shown = {re.sub(r"_(bucket|sum|count)$", "", n) for e in dashboard_queries() for n in NAME.findall(e)}
    assert set(INSTRUMENTS) <= shown, set(INSTRUMENTS) - shown


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(rule_queries())} rules found" in out.stdout


def test_promtool_accepts_the_dashboards_promql(tmp_path: Path) -> None:
    filled = [e.replace("$__rate_interval", "5m").replace("$model", ".*") for e in dashboard_queries()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"panel:q{i}", "expr": e} for i, e in enumerate(filled)],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
