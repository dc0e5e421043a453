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
from streams.links import metrics as link_metrics
from streams.worker import metrics as worker_metrics

ROOT = Path(__file__).parents[3]
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
    # the dashboard's variables as Grafana fills them: "All" links, a scrape-sized interval
    return expr.replace("$link", ".*").replace("$__rate_interval", "1m")


def test_dashboards_are_provisioned_and_default_to_the_provisioned_datasource():
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
        variable = d["templating"]["list"][0]
        assert variable["name"] == "datasource" and variable["current"]["value"] == uid
        for p in d["panels"]:
            assert p["targets"] and {"x", "y", "w", "h"} <= set(p["gridPos"])


# Grafana's dashboard-linter (a Go module the module proxy does not serve here), its rules
# checked by hand; the ones that do not fit inferwatch are excluded in its own `.lint` file,
# each with its reason, as the linter reads them.
LINT = yaml.safe_load((GRAFANA / "dashboards" / ".lint").read_text())["exclusions"]
RANGED = re.compile(r"\b(rate|irate|increase|delta|idelta|deriv)\(([^()]*)\)")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_passes_the_dashboard_linter_rules(path):
    d = json.loads(path.read_text())
    assert d["editable"] is False  # provisioned: changes belong in the repository
    variables = {v["name"]: v for v in d["templating"]["list"]}
    # template-datasource-rule
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for p in d["panels"]:
        # panel-datasource-rule: every panel and query on the templated datasource
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]
        # panel-title-description-rule, panel-units-rule
        assert p["title"] and len(p.get("description", "")) > 20, p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
        for t in p["targets"]:
            # target-rate-interval-rule
            for fn, arg in RANGED.findall(t["expr"]):
                assert arg.endswith("[$__rate_interval]"), (p["title"], fn, arg)
    for rule in ("template-job-rule", "template-instance-rule", "target-job-rule",
                 "target-instance-rule"):  # fmt: skip
        assert len(LINT[rule]["reason"]) > 40


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
    exported = set(
        re.findall(
            r'"(inferwatch_[a-z0-9_]+)"',
            "".join(Path(m.__file__).read_text() for m in (metrics, link_metrics, worker_metrics)),
        )
    )
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                for r in g["rules"] if "record" in r}  # fmt: skip
    for name in re.findall(r"\b(inferwatch_[a-z0-9_]+)", expr):
        assert re.sub(r"_(total|bucket|sum|count)$", "", name) in exported, (title, name)
    for name in re.findall(r"\b(inferwatch:[a-z0-9_:]+)", expr):
        assert name in recorded, (title, name)
