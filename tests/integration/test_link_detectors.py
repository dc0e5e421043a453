"""The link detectors in the worker, against the real broker.

Anomalies: a link fails while another carries on; the failure fires once on alerts.v1 with its
context, the healthy link stays quiet, the score gauges are on /metrics, and the detector state
survives a restart (the second worker resolves the anomaly the first one raised).
Congestion: the catalogued 100 Mbit/s link saturates, then calms down: critical with its
evidence, then resolved, and the state and utilisation gauges on /metrics."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.kafka_util import create_topic, produce, read_all

pytestmark = pytest.mark.integration

W = 10.0
FAST = {  # a short warm-up so the test needs minutes of event time, not hours
    "INFERWATCH_ANOMALY__DETECTOR__WINDOW": "6",
    "INFERWATCH_ANOMALY__DETECTOR__MEMORY": "500",
    "INFERWATCH_ANOMALY__DETECTOR__WARMUP": "30",
    "INFERWATCH_ANOMALY__DETECTOR__SHORT": "3",
    "INFERWATCH_ANOMALY__DETECTOR__LONG": "500",
    "INFERWATCH_ANOMALY__DETECTOR__HOLD": "30",
    "INFERWATCH_ANOMALY__RESOLVE_WINDOWS": "3",
    "INFERWATCH_LINKSTATE__CHECKPOINT_SECONDS": "0.5",
    "INFERWATCH_ANOMALY__SERIES": "[bytes, flows]",
    "INFERWATCH_CLASSIFY__ENABLED": "false",
}


def _records(
    t0: float, windows: range, rng: random.Random, volume: Callable[[int, int], float]
) -> list[bytes]:
    """Per 10-s window and link (exporter probe-1, interface 1 = lab-uplink, 100 Mbit/s in
    config/links.yaml, and interface 2): a few flows whose reply bytes (the link's "in")
    total about ``volume(k, iface)`` bytes; none when it is 0."""
    out = []
    for k in windows:
        for iface in (1, 2):
            total = volume(k, iface)
            if total <= 0:
                continue
            flows = 4 + (k % 3)
            for _ in range(flows):
                start = t0 + k * W + rng.uniform(0, W - 1)
                out.append(orjson.dumps({
                    "schema": "inferwatch.flow/1", "ts_start": start,
                    "ts_end": min(start + rng.uniform(0, 0.9), t0 + (k + 1) * W - 0.01),
                    "src_ip": f"10.1.0.{rng.randint(1, 254)}", "dst_ip": "198.51.100.7",
                    "src_port": rng.randint(1024, 65535), "dst_port": 443, "proto": 6,
                    "bytes_fwd": 2000, "packets_fwd": 10,
                    "bytes_rev": int(total / flows * rng.uniform(0.9, 1.1)),
                    "packets_rev": 200, "exporter": "probe-1", "iface_in": iface,
                }))  # fmt: skip
    return out


def _events(broker: str, topic: str, alertname: str) -> list[dict[str, Any]]:
    msgs = asyncio.run(read_all(broker, topic, 10_000, wait=3))
    events = [orjson.loads(m.value) for m in msgs]
    return [e for e in events if e["labels"]["alertname"] == alertname]


def _anomaly_events(broker: str, topic: str) -> list[dict[str, Any]]:
    return _events(broker, topic, "InferwatchLinkAnomaly")


def test_link_failure_fires_once_quiet_elsewhere_and_state_survives_restart(
    broker, names, start_worker
):
    rng = random.Random(5)
    t0 = math.floor(time.time() / W) * W - 200 * W  # 200 windows of history, ending now
    failed = range(150, 170)

    def volume(k: int, iface: int) -> float:  # a swing with bursts; interface 2 fails
        if iface == 2 and k in failed:
            return 0.0
        return 1_250_000 * (1 + 0.4 * math.sin(2 * math.pi * k / 40)) * rng.uniform(0.8, 1.2)

    asyncio.run(create_topic(broker, names.raw, 1))  # one source: event time stays in order
    first = _records(t0, range(160), rng, volume)
    asyncio.run(produce(broker, names.raw, first))
    env = {**FAST, "INFERWATCH_ANALYSIS__MAX_IDLE_WINDOWS": "1000"}
    worker = start_worker(env)
    worker.wait_total("inferwatch_analysed_records_total", len(first), timeout=90)

    deadline = time.monotonic() + 60
    events: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        events = _anomaly_events(broker, names.alerts)
        # both series of the failed link fire; their events may land one poll apart
        if any(e["status"] == "firing" and e["labels"]["series"] == "bytes" for e in events):
            break
    firing = [e for e in events if e["status"] == "firing"]
    assert firing, worker.log()[-3000:]
    # the failed link, not the healthy one
    assert {e["labels"]["link"] for e in firing} == {"probe-1#2"}, firing  # type: ignore[index]
    bytes_fire = [e for e in firing if e["labels"]["series"] == "bytes"]  # type: ignore[index]
    assert len(bytes_fire) == 1
    ctx = bytes_fire[0]["context"]
    assert isinstance(ctx, dict)
    onset = (ctx["window_start"] - t0) / W
    assert 150 <= onset <= 156, ctx  # within 60 s of the failure
    assert ctx["observed"] == 0.0 and ctx["expected"] > 50_000  # bytes/s the link carried
    assert ctx["expected_low"] <= ctx["expected"] <= ctx["expected_high"]
    assert worker.total("inferwatch_link_anomaly_active", link="probe-1#2", series="bytes") == 1
    assert (
        0 <= worker.total("inferwatch_link_anomaly_score", link="probe-1#1", series="bytes") < 0.5
    )
    worker.wait_total("inferwatch_link_state_checkpoints_total", 2, outcome="written")
    time.sleep(2)  # a tick or two: the state after the last window is saved too
    assert worker.terminate() < 15

    # the link comes back; a new worker resumes the detectors and resolves what the first raised
    second = _records(t0, range(160, 200), rng, volume)
    asyncio.run(produce(broker, names.raw, second))
    worker2 = start_worker(env)
    worker2.wait_total("inferwatch_analysed_records_total", len(second), timeout=90)
    worker2.wait_total("inferwatch_link_state_checkpoints_total", 2, outcome="restored")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = _anomaly_events(broker, names.alerts)
        if any(e["status"] == "resolved" and e["labels"]["series"] == "bytes" for e in events):  # type: ignore[index]
            break
    bytes_events = [e for e in events if e["labels"]["series"] == "bytes"]  # type: ignore[index]
    assert [e["status"] for e in bytes_events] == ["firing", "resolved"], [
        (e["status"], e["labels"], e["context"]) for e in bytes_events
    ]
    assert bytes_events[0]["fingerprint"] == bytes_events[1]["fingerprint"]
    assert worker2.total("inferwatch_anomaly_events_total", status="firing") == 0
    assert worker2.total("inferwatch_link_anomaly_active", link="probe-1#2", series="bytes") == 0
    worker2.terminate()


def test_saturation_raises_critical_with_evidence_then_resolves(broker, names, start_worker):
    rng = random.Random(9)
    t0 = math.floor(time.time() / W) * W - 100 * W
    full = 100e6 / 8 * W  # bytes per window at the capacity of lab-uplink

    def volume(k: int, iface: int) -> float:  # 40 %, then saturated for 2 minutes, then 30 %
        if iface == 2:
            return 0.0
        return full * (0.98 if 60 <= k < 72 else 0.4 if k < 60 else 0.3)

    asyncio.run(create_topic(broker, names.raw, 1))
    values = _records(t0, range(90), rng, volume)
    asyncio.run(produce(broker, names.raw, values))
    worker = start_worker({"INFERWATCH_CLASSIFY__ENABLED": "false",
                           "INFERWATCH_ANOMALY__ENABLED": "false"})  # fmt: skip
    worker.wait_total("inferwatch_analysed_records_total", len(values), timeout=90)
    deadline = time.monotonic() + 60
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        events = _events(broker, names.alerts, "InferwatchLinkCongestion")
        if any(e["status"] == "resolved" for e in events):
            break
    seq = [(e["status"], e["labels"]["severity"], e["labels"]["direction"]) for e in events]
    assert seq == [("firing", "critical", "in"), ("resolved", "critical", "in")], seq
    ctx = events[0]["context"]
    assert (ctx["window_start"] - t0) / W - 60 <= 2  # within 30 s of the onset
    assert ctx["capacity_bps"] == 100e6 and 0.9 <= ctx["utilisation"] <= 1.1
    assert (events[1]["ends_at"] - (t0 + 72 * W)) <= 60  # resolved within 60 s of the drop
    assert worker.total("inferwatch_link_congestion_state", link="lab-uplink", direction="in") == 0
    assert 0.2 < worker.total("inferwatch_link_utilisation_ratio", link="lab-uplink",
                              direction="in") < 0.45  # fmt: skip
    worker.terminate()


def test_worker_killed_right_after_an_alert_the_next_one_resolves_it_once(
    broker, names, start_worker
):
    """SIGKILL right after a congestion alert fired (anomaly detection off: the congestion state
    is saved on its own). The interval save is an hour, so only the record written at the alert
    can tell the next worker the alert is open: it resolves it, and raises nothing twice."""
    rng = random.Random(11)
    t0 = math.floor(time.time() / W) * W - 100 * W
    full = 100e6 / 8 * W

    def volume(k: int, iface: int) -> float:  # 40 %, saturated from window 60 to 72, then 30 %
        if iface == 2:
            return 0.0
        return full * (0.98 if 60 <= k < 72 else 0.4 if k < 60 else 0.3)

    asyncio.run(create_topic(broker, names.raw, 1))
    env = {"INFERWATCH_CLASSIFY__ENABLED": "false", "INFERWATCH_ANOMALY__ENABLED": "false",
           "INFERWATCH_LINKSTATE__CHECKPOINT_SECONDS": "3600",
           # the records are in the past: an idle worker's watermark must not jump to now
           "INFERWATCH_INGEST__IDLE_SECONDS": "3600"}  # fmt: skip
    calm = _records(t0, range(56), rng, volume)
    asyncio.run(produce(broker, names.raw, calm))
    worker = start_worker(env)
    worker.wait_total("inferwatch_analysed_records_total", len(calm), timeout=90)
    worker.wait_total("inferwatch_link_state_checkpoints_total", 1, outcome="written")  # interval
    saturated = _records(t0, range(56, 66), rng, volume)
    asyncio.run(produce(broker, names.raw, saturated))
    worker.wait_total("inferwatch_congestion_events_total", 1, kind="congestion", status="firing")
    worker.wait_total("inferwatch_link_state_checkpoints_total", 2, outcome="written")  # alert
    worker.proc.kill()
    worker.proc.wait()

    second = _records(t0, range(66, 90), rng, volume)
    asyncio.run(produce(broker, names.raw, second))
    worker2 = start_worker(env)
    worker2.wait_total("inferwatch_congestion_events_total", 1, kind="congestion",
                       status="resolved", timeout=90)  # fmt: skip
    assert worker2.total("inferwatch_link_state_checkpoints_total", outcome="restored") == 1
    events = _events(broker, names.alerts, "InferwatchLinkCongestion")
    seq = [(e["status"], e["labels"]["severity"], e["labels"]["direction"]) for e in events]
    assert seq == [("firing", "critical", "in"), ("resolved", "critical", "in")], seq
    assert events[0]["fingerprint"] == events[1]["fingerprint"]
    assert events[1]["starts_at"] == events[0]["starts_at"]
    assert worker2.total("inferwatch_congestion_events_total", status="firing") == 0
    worker2.terminate()
