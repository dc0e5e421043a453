"""Congestion on real packets: a tc-shaped 20 Mbit/s lab link, loaded by paced TCP (lab.load),
metered live by `inferwatch probe` into the real broker, analysed by a worker.

40 % for a minute, then 30 Mbit/s offered (the link saturates) for a minute, then 30 %: the
worker raises critical within 30 s of the saturation's onset (event time) and resolves it
within 60 s of the load dropping, and nothing before. Needs root."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import yaml

from lab.topology import LinkSpec, Shape
from tests.kafka_util import create_topic, read_all

pytestmark = pytest.mark.integration

MBIT = 20.0
PROFILE = "60:8,60:30,70:6"  # Mbit/s offered: 40 %, saturated, 30 %


def test_saturated_lab_link_goes_critical_then_resolves(
    broker, names, start_worker, make_lab, tmp_path: Path
):
    lab = make_lab(LinkSpec(Shape(rate_mbit=MBIT), Shape(rate_mbit=MBIT)))
    links = tmp_path / "links.yaml"
    links.write_text(yaml.safe_dump({"links": [
        {"id": "lab-20m", "name": "Lab link, 20 Mbit/s", "capacity_bps": MBIT * 1e6,
         "exporter": "lab-probe", "iface": 1}]}))  # fmt: skip
    asyncio.run(create_topic(broker, names.raw, 1))
    worker = start_worker({
        "INFERWATCH_ANALYSIS__LINKS_FILE": str(links),
        "INFERWATCH_CLASSIFY__ENABLED": "false",
        "INFERWATCH_ANOMALY__ENABLED": "false",
        "INFERWATCH_ANALYSIS__SERIES_TOPIC": f"{names.raw}.series",
    })  # fmt: skip
    py = sys.executable
    inferwatch = shutil.which("inferwatch", path=str(Path(py).parent)) or "inferwatch"
    probe = subprocess.Popen(
        [inferwatch, "probe", "--interface", lab.bridge, "--broker", broker, "--topic",
         names.raw, "--exporter", "lab-probe", "--link", "lab-20m", "--active-timeout", "5",
         "--idle-timeout", "5"],
        stdout=(tmp_path / "probe.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    procs = [probe]
    try:
        time.sleep(5)  # the probe captures
        server = lab.popen(lab.server_ns, [py, "-m", "lab.load", "server", "--port", "5201",
                                           "--profile", PROFILE, "--connections", "4"])  # fmt: skip
        procs.append(server)
        time.sleep(1)
        t0 = time.time()  # the profile starts when the connections arrive
        client = lab.popen(lab.client_ns, [py, "-m", "lab.load", "client", "--server",
                                           lab.server_ip, "--connections", "4",
                                           "--seconds", "240"])  # fmt: skip
        procs.append(client)
        assert client.wait(260) == 0
        deadline = time.monotonic() + 60
        events: list[dict] = []
        while time.monotonic() < deadline:
            msgs = asyncio.run(read_all(broker, names.alerts, 10_000, wait=3))
            events = [orjson.loads(m.value) for m in msgs]
            events = [e for e in events if e["labels"]["alertname"] == "InferwatchLinkCongestion"]
            if any(e["status"] == "resolved" for e in events):
                break
        log = (tmp_path / "probe.log").read_text(errors="replace")[-2000:]
        series = asyncio.run(read_all(broker, f"{names.raw}.series", 10_000, wait=3))
        for m in series:  # the link's "in" utilisation per window, for the record
            w = orjson.loads(m.value)
            b = sum(c["bytes_in"] for c in w["classes"].values())
            print(
                f"{w['window_start'] - t0:6.0f} s  {b * 8 / w['window_seconds'] / MBIT / 1e6:5.2f}"
            )
        seq = [(e["status"], e["labels"]["severity"], e["labels"]["direction"]) for e in events]
        assert seq == [("firing", "critical", "in"), ("resolved", "critical", "in")], (seq, log)
        fire, done = events
        onset = fire["context"]["window_start"] + fire["context"]["window_seconds"] - (t0 + 60)
        assert onset <= 30, fire["context"]  # the window that raised it ends within 30 s
        assert fire["context"]["utilisation"] >= 0.9
        assert done["ends_at"] - (t0 + 120) <= 60, done
        print(f"critical {onset:.0f} s after the onset, resolved "
              f"{done['ends_at'] - (t0 + 120):.0f} s after the drop")  # fmt: skip
        assert worker.total("inferwatch_link_congestion_state", link="lab-20m", direction="in") == 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
