"""The Grafana dashboards, checked without Grafana: structure, provisioning, PromQL that
Prometheus parses, and only metrics (or recording rules) that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from streams import metrics

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "config" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
RULES = ROOT / "config" / "prometheus" / "rules" / "inferwatch.rules.yml"


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expression) for every query of every panel."""
    out = []
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        for p in d["panels"]:
            out.extend((path.name, p["title"], t["expr"]) for t in p["targets"])
    return out


def concrete(expr: str) -> str:
    return expr.replace("$link", ".*")  # the dashboard variable, as "All" selects it


def test_dashboards_are_provisioned_with_the_fixed_datasource():
    assert {p.stem for p in DASHBOARDS} >= {
        "inferwatch-overview", "inferwatch-ai", "inferwatch-pipeline", "inferwatch-links",
        "inferwatch-anomalies"}  # fmt: skip
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    uids = set()
    for path in DASHBOARDS:
        d = json.loads(path.read_text())
        assert d["uid"] not in uids and d["title"] and d["panels"]
        uids.add(d["uid"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids))
        for p in d["panels"]:
            assert p["datasource"]["uid"] == uid and p["targets"]
            assert all(t["datasource"]["uid"] == uid for t in p["targets"])
            assert {"x", "y", "w", "h"} <= set(p["gridPos"])


def test_every_panel_query_parses(tmp_path):
    tool = shutil.which("promtool")
    assert tool, "promtool is missing (make test installs it)"
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:query_{i}:check", "expr": concrete(expr)}
        for i, (_, _, expr) in enumerate(panel_queries())]}]}  # fmt: skip
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    res = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(("dashboard", "title", "expr"), panel_queries())
def test_panels_use_only_real_metrics_and_recording_rules(dashboard, title, expr):
    exported = set(re.findall(r'"(inferwatch_[a-z0-9_]+)"', Path(metrics.__file__).read_text()))
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                for r in g["rules"] if "record" in r}  # fmt: skip
    for name in re.findall(r"\b(inferwatch_[a-z0-9_]+)", expr):
        assert re.sub(r"_(total|bucket|sum|count)$", "", name) in exported, (title, name)
    for name in re.findall(r"\b(inferwatch:[a-z0-9_:]+)", expr):
        assert name in recorded, (title, name)
