"""The Prometheus rules: valid, unit-tested alert by alert, documented, and about real metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from streams import metrics
from streams.links import metrics as link_metrics
from streams.worker import metrics as worker_metrics

ROOT = Path(__file__).parents[3]
RULES = ROOT / "config" / "prometheus" / "rules" / "inferwatch.rules.yml"
TESTS = ROOT / "config" / "prometheus" / "tests" / "inferwatch.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing (Debian package prometheus; make test installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, cwd=TESTS.parent)


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_has_severity_annotations_and_a_runbook():
    tests = yaml.safe_load(TESTS.read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t["alert_rule_test"] if a.get("exp_alerts")}
    for rule in alerts():
        name = rule["alert"]
        assert name in fired, f"{name} has no promtool test where it fires"
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])
        url = rule["annotations"]["runbook_url"]
        base = '{{ or $externalLabels.runbook_base_url "docs/runbooks" }}/'
        assert url.startswith(base) and (ROOT / "docs/runbooks" / url.removeprefix(base)).exists()


def test_rules_use_only_metrics_the_worker_exports():
    source = "".join(Path(m.__file__).read_text() for m in (metrics, link_metrics, worker_metrics))
    exported = set(re.findall(r'"(inferwatch_[a-z0-9_]+)"', source))
    text = RULES.read_text()
    used = set(re.findall(r"\b(inferwatch_[a-z0-9_]+)", text))
    for name in used:
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert base in exported, f"{name} is not a metric of the worker"
