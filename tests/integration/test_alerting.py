"""Alerting end to end with the real servers: worker -> Prometheus (the project's rules) ->
Alertmanager (the project's configuration) -> `inferwatch sink`, as in docker-compose.yml.
Then every query of every Grafana dashboard, run on that Prometheus, must return data.

The scenario: an exporter starts sending records the worker cannot read (a third of them), so
the dead-letter ratio alert must fire, arrive at the sink once with its labels, and be resolved
when the bad records stop. The rules and Alertmanager timings are the project's, shortened
for the test (a rule's `for:` and range windows to seconds, Alertmanager's group waits to one
second); the expressions, labels and routing are unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import free_port
from tests.kafka_util import produce
from tests.records import valid_records
from tests.unit.deploy.test_dashboards import concrete

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
RULES = ROOT / "config" / "prometheus" / "rules" / "inferwatch.rules.yml"
ALERTMANAGER = ROOT / "config" / "alertmanager" / "alertmanager.yml"


def shorten(rules: str) -> str:
    """The rules with `for:` durations and range windows in seconds, for a test that lasts one
    minute: 10m -> 5s, [5m] -> [10s], and so on."""
    rules = re.sub(r"for: (\d+)m", lambda m: f"for: {min(int(m.group(1)), 5)}s", rules)
    return re.sub(r"\[(\d+)m\]", lambda m: f"[{min(int(m.group(1)) * 2, 20)}s]", rules)


class Sink:
    """The webhook receiver: `inferwatch sink`, the compose stack's, as a process; what it
    received is read from its GET /."""

    def __init__(self) -> None:
        port = free_port()
        exe = Path(sys.executable).parent / "inferwatch"
        self.proc = subprocess.Popen(
            [str(exe), "sink", "--port", str(port)], stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{port}/alerts"
        self._list = f"http://127.0.0.1:{port}/"
        wait_for(self._up, 30, "inferwatch sink")

    def _up(self) -> bool:
        try:
            urllib.request.urlopen(self._list, timeout=2).close()
        except OSError:
            return False
        return True

    def alerts(self, name: str, status: str) -> list[tuple[float, dict[str, Any]]]:
        with urllib.request.urlopen(self._list, timeout=5) as resp:
            posts = json.loads(resp.read())
        assert all(p["signature"] == "unsigned" for p in posts)  # Alertmanager does not sign
        return [(p["received_at"], a) for p in posts for a in p["body"]["alerts"]
                if a["labels"]["alertname"] == name and a["status"] == status]  # fmt: skip

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def lab_records() -> list[bytes]:
    """The committed lab recording's probe records: every class, AI flows with QoE."""
    rows = (ROOT / "lab" / "recordings" / "e2e" / "flows.jsonl").read_bytes().splitlines()
    return [v for v in rows if b'"schema"' in v]


def query(port: int, expr: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return list(json.loads(r.read())["data"]["result"])


# panels whose metric has no sample by design in a calm scenario: the saturation ETA exists
# only while a crossing of the warning level is forecast (docs/congestion.md)
SPARSE = {"Forecast time to saturation"}


def test_dead_letter_alert_reaches_the_webhook_once_and_resolves_and_dashboards_have_data(
    broker, names, start_worker, tmp_path
):
    for tool in ("prometheus", "prometheus-alertmanager"):
        assert shutil.which(tool), f"{tool} is missing (make test installs it)"
    links = tmp_path / "links.yaml"  # the lab probe's interface as a link with a capacity
    links.write_text(yaml.safe_dump({"links": [
        {"id": "lab", "name": "Lab link", "capacity_bps": 1e8, "exporter": "lab-probe",
         "iface": 1}]}))  # fmt: skip
    worker = start_worker({"INFERWATCH_ANALYSIS__LINKS_FILE": str(links)})
    # the analysis starts once the model is bootstrapped: about 10 s alone, and more than this
    # scenario's 40 s once when the suite's other lane loaded the machine (every analysis
    # panel empty); the panels are what is checked here, not how fast the bootstrap is
    wait_for(lambda: worker.total("inferwatch_analysis_ready") == 1, 300, "the worker's model")
    sink = Sink()

    am_port, prom_port = free_port(), free_port()
    am_cfg = yaml.safe_load(ALERTMANAGER.read_text())
    am_cfg["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    for route in am_cfg["route"].get("routes", []):
        route["group_wait"] = "1s"
    am_cfg["receivers"][0]["webhook_configs"][0]["url"] = sink.url
    (tmp_path / "am.yml").write_text(yaml.safe_dump(am_cfg))
    (tmp_path / "rules.yml").write_text(shorten(RULES.read_text()))
    (tmp_path / "prom.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]
                     },
        "scrape_configs": [{"job_name": "inferwatch",
                            "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}]}],
    }))  # fmt: skip
    procs = [
        subprocess.Popen(
            ["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}",
             f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
             "--cluster.listen-address="],
            stdout=(tmp_path / "am.log").open("wb"), stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prom.yml'}",
             f"--storage.tsdb.path={tmp_path / 'prom-data'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=(tmp_path / "prom.log").open("wb"), stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:

        def scraped() -> bool:
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?query=up%7Bjob%3D%22inferwatch%22%7D"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    res = json.loads(r.read())["data"]["result"]
            except OSError:
                return False
            return bool(res) and res[0]["value"][1] == "1"

        wait_for(scraped, 60, "Prometheus scraping the worker")
        good = [v for _, v in valid_records(200)] + lab_records()
        bad = [b'{"ip_src": "10.0.0.1", "bytes": "lots"}'] * 100  # a third refused
        onset = time.time()
        for _ in range(8):  # bad records for about 16 s
            asyncio.run(produce(broker, names.raw, good + bad))
            time.sleep(2)
        fired = wait_for(lambda: sink.alerts("InferwatchDeadLetterRate", "firing"), 60,
                         "the dead-letter alert at the webhook")  # fmt: skip
        at, alert = fired[0]
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["runbook_url"] == "docs/runbooks/InferwatchDeadLetterRate.md"
        delay = at - onset
        assert delay < 60
        for _ in range(15):  # the exporter is fixed: good records only
            asyncio.run(produce(broker, names.raw, good))
            time.sleep(2)
            if sink.alerts("InferwatchDeadLetterRate", "resolved"):
                break
        wait_for(lambda: sink.alerts("InferwatchDeadLetterRate", "resolved"), 60,
                 "the resolution at the webhook")  # fmt: skip
        assert len(sink.alerts("InferwatchDeadLetterRate", "firing")) == 1  # paged once
        assert len(sink.alerts("InferwatchDeadLetterRate", "resolved")) == 1
        assert not sink.alerts("InferwatchWorkerDown", "firing")
        print(f"onset -> alert at the webhook: {delay:.1f} s")

        empty = []
        for path in sorted((ROOT / "config" / "grafana" / "dashboards").glob("*.json")):
            for panel in json.loads(path.read_text())["panels"]:
                for target in panel["targets"]:
                    if panel["title"] in SPARSE:
                        continue
                    if not query(prom_port, concrete(target["expr"])):
                        empty.append((path.name, panel["title"]))
        assert not empty, f"panels without data after the scenario: {empty}"
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        sink.stop()
        worker.terminate()
